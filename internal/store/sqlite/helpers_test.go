package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// TestConformance runs the store contract's suite on SQLite files.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t testing.TB) string { return "sqlite:" + filepath.Join(t.TempDir(), "sigil.db") },
		Open: func(ctx context.Context, dsn string) (store.Store, error) {
			return Open(ctx, dsn)
		},
	})
}

// The suite's fixtures, by the names this package's tests use.
var (
	t0                 = storetest.T0
	testDevice         = storetest.Device
	testChallenge      = storetest.Challenge
	testEvidence       = storetest.Evidence
	testCertificate    = storetest.Certificate
	testEntry          = storetest.Entry
	testToken          = storetest.Token
	opaqueToken        = storetest.OpaqueToken
	externalToken      = storetest.ExternalToken
	handleHash         = storetest.HandleHash
	insertTokens       = storetest.InsertTokens
	insertAudited      = storetest.InsertAudited
	enrolled           = storetest.Enroll
	completeEnrollment = storetest.CompleteEnrollment
	appendEntries      = storetest.AppendEntries
)

func openStore(t testing.TB) (store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sigil.db")
	return openPath(t, path), path
}

func openPath(t testing.TB, dsn string) store.Store {
	t.Helper()
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
