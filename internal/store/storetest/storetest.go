package storetest

import (
	"context"
	"os"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
)

// Backend makes the databases of the backend under test and opens them.
type Backend struct {
	// New creates a new, empty database for t, removed when t ends, and
	// returns the DSN that names it.
	New func(t testing.TB) string

	// Open opens a handle on the database dsn names: a Store with
	// connections of its own, as another process would have. The suite
	// closes it.
	Open func(ctx context.Context, dsn string) (store.Store, error)
}

// Run runs the conformance suite on b, each test on new databases. In a
// process the suite started to act as another writer (see races.go), it
// runs that writer's part instead.
func Run(t *testing.T, b Backend) {
	h := &harness{t: t, b: b}
	if spec := os.Getenv(workerEnv); spec != "" {
		h.worker(t, spec)
		return
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
	t.Run("concurrent", h.races)
}

// harness opens the backend's stores for the tests.
type harness struct {
	t *testing.T // the suite's, for the processes' test name
	b Backend
}

// open returns a store on a new database and its DSN.
func (h *harness) open(t testing.TB) (store.Store, string) {
	t.Helper()
	dsn := h.b.New(t)
	return h.reopen(t, dsn), dsn
}

// fresh returns a store on a new database.
func (h *harness) fresh(t testing.TB) store.Store {
	t.Helper()
	st, _ := h.open(t)
	return st
}

// reopen opens another handle on the database dsn, closed when t ends.
func (h *harness) reopen(t testing.TB, dsn string) store.Store {
	t.Helper()
	st, err := h.b.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A test is one test of the suite.
type test struct {
	name string
	fn   func(t *testing.T, h *harness)
}

// tests are the suite's tests but for the races, in the order they run.
var tests = []test{
	{"ChallengeRoundTrip", testChallengeRoundTrip},
	{"TimesNormalised", testTimesNormalised},
	{"CreateChallengeInvalid", testCreateChallengeInvalid},
	{"ConsumeChallenge", testConsumeChallenge},
	{"PurgeExpiredChallenges", testPurgeExpiredChallenges},
	{"UseChallenge", testUseChallenge},
	{"UseChallengeRace", testUseChallengeRace},
	{"ChallengeKey", testChallengeKey},
	{"DeviceRoundTrip", testDeviceRoundTrip},
	{"BindDeviceRebind", testBindDeviceRebind},
	{"BindDeviceAKOfAnotherEK", testBindDeviceAKOfAnotherEK},
	{"Devices", testDevices},
	{"DisableDeviceRevokesCertificates", testDisableDeviceRevokesCertificates},
	{"SetDeviceStatusErrors", testSetDeviceStatusErrors},
	{"CertificateRoundTrip", testCertificateRoundTrip},
	{"InsertCertificateErrors", testInsertCertificateErrors},
	{"DeviceCertificates", testDeviceCertificates},
	{"CurrentDeviceCertificates", testCurrentDeviceCertificates},
	{"IdentityHolders", testIdentityHolders},
	{"DeviceIdentities", testDeviceIdentities},
	{"RevokeCertificate", testRevokeCertificate},
	{"Revocations", testRevocations},
	{"CertificateByThumbprint", testCertificateByThumbprint},
	{"RevokeCertificateRevokesTokens", testRevokeCertificateRevokesTokens},
	{"DisableDeviceRevokesTokens", testDisableDeviceRevokesTokens},
	{"Evidence", testEvidence},
	{"FirstSeen", testFirstSeen},
	{"Epoch", testEpoch},
	{"NewEpoch", testNewEpoch},
	{"CRL", testCRL},
	{"CRLRace", testCRLRace},
	{"AppliedPolicy", testAppliedPolicy},
	{"AppliedPolicyRace", testAppliedPolicyRace},
	{"StreamRoundTrip", testStreamRoundTrip},
	{"StreamRefused", testStreamRefused},
	{"LockStreamRace", testLockStreamRace},
	{"StreamLimit", testStreamLimit},
	{"StreamLimitRace", testStreamLimitRace},
	{"TokenRoundTrip", testTokenRoundTrip},
	{"InsertTokenRefuses", testInsertTokenRefuses},
	{"InsertTokenNarrowLifetime", testInsertTokenNarrowLifetime},
	{"InsertTokensConcurrently", testInsertTokensConcurrently},
	{"RecordToken", testRecordToken},
	{"RecordTokenExternalAgain", testRecordTokenExternalAgain},
	{"RecordTokensConcurrently", testRecordTokensConcurrently},
	{"PurgeExpiredTokens", testPurgeExpiredTokens},
	{"ExternalToken", testExternalToken},
	{"ExternalTokenRefused", testExternalTokenRefused},
	{"RevokeTokenCascade", testRevokeTokenCascade},
	{"RevokeTokenRecord", testRevokeTokenRecord},
	{"RevokeTokenRollsBack", testRevokeTokenRollsBack},
	{"RevocationEventsPaging", testRevocationEventsPaging},
	{"FeedNotifier", testFeedNotifier},
	{"NotifyEveryRevocation", testNotifyEveryRevocation},
	{"Locker", testLocker},
	{"AuditAppendAndRead", testAuditAppendAndRead},
	{"AuditRanges", testAuditRanges},
	{"AppendAuditInvalid", testAppendAuditInvalid},
	{"AppendAuditDuplicateKey", testAppendAuditDuplicateKey},
	{"AuditWithOperation", testAuditWithOperation},
	{"AuditOperationRefusedByStore", testAuditOperationRefusedByStore},
	{"Checkpoints", testCheckpoints},
	{"Cosignatures", testCosignatures},
	{"AuditStorage", testAuditStorage},
	{"PublisherFenced", testPublisherFenced},
	{"AuditNodesCommitWithEntries", testAuditNodesCommitWithEntries},
	{"AuditNodeHashesLevels", testAuditNodeHashesLevels},
	{"AuditShards", testAuditShards},
	{"ShardRotationRace", testShardRotationRace},
	{"TxCommits", testTxCommits},
	{"TxRollsBack", testTxRollsBack},
	{"TxIsolation", testTxIsolation},
	{"TxCanceledBeforeStart", testTxCanceledBeforeStart},
	{"ConcurrentWriters", testConcurrentWriters},
	{"Close", testClose},
}
