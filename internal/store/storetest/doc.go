// Package storetest is the conformance suite of the store contract
// (package store): one black-box suite that every backend runs, so that a
// backend that passes it is a drop-in for the others.
//
// A backend's test calls Run with a Backend that makes new databases and
// opens handles on them:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Backend{
//			New:  func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "sigil.db") },
//			Open: func(ctx context.Context, dsn string) (store.Store, error) { return sqlite.Open(ctx, dsn) },
//		})
//	}
//
// The suite checks every method's contract: round trips, the errors each
// method promises, transactions (commit, rollback on error, panic and
// cancellation, isolation), and the audit log's storage as the audit
// package uses it. Then it checks each invariant the contract promises
// under concurrency, in three settings: goroutines sharing one handle,
// several handles (each its own pool) on one database, and several OS
// processes (the test binary run again, each with a handle of its own):
//
//   - a challenge is consumed once;
//   - one EK binds one AK, every rebind reported once, an AK on one EK;
//   - a certificate is revoked once, and none of a disabled device is left
//     unrevoked, however inserts and the disable interleave;
//   - no token is left unrevoked under a revoked parent, however inserts
//     and the revocation interleave, and the cascade revokes every
//     descendant, including those inserted meanwhile;
//   - concurrent cascades revoke each token once, with one event each,
//     numbered densely, each call's in a row;
//   - audit indices are dense and unique;
//   - checkpoints are fenced: none is recorded after one of its size or
//     larger was, and none is refused without such a reason;
//   - a signing key's first sighting is recorded once;
//   - CRLs are fenced: of concurrent PutCRLs of one number one succeeds.
//
// A store with the optional FeedNotifier power is also checked to notify
// revocations committed through another handle, and one with the Locker
// power to give each lock to one handle at a time.
//
// A backend's own white-box tests (its SQL, its migrations, its pools) stay
// in its package; the fixtures here (Device, Challenge, Token, Entry…)
// are exported for them.
package storetest
