package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// BenchmarkTokenTx measures what a token exchange writes: one Tx that
// inserts the token record (exchanged from a stored subject token) and
// appends its audit entry, with the default synchronous=FULL and group
// commit, from 1 and from 64 goroutines.
func BenchmarkTokenTx(b *testing.B) {
	for _, goroutines := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			benchTokenTx(b, goroutines)
		})
	}
}

func benchTokenTx(b *testing.B, goroutines int) {
	ctx := context.Background()
	st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
	insertTokens(b, st, testToken("subject", ""))
	driveTx(b, goroutines, func(i int64) error {
		return insertAudited(ctx, st, testToken(fmt.Sprintf("bench-%d", i), "subject"))
	})
}

// BenchmarkExchangeReads measures the reads of a token exchange on the
// read pool: the caller's certificate by serial and the subject token's
// record by jti, from 16 goroutines (the exchange benchmark's clients).
func BenchmarkExchangeReads(b *testing.B) {
	ctx := context.Background()
	st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
	d := testDevice("reads")
	ch, e := testChallenge("reads", d), testEvidence("reads", d)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		b.Fatal(err)
	}
	c := testCertificate("reads", d, e)
	if err := completeEnrollment(ctx, st, ch.ID, d, e, c, nil); err != nil {
		b.Fatal(err)
	}
	insertTokens(b, st, testToken("subject", ""))
	driveTx(b, 16, func(int64) error {
		if _, err := st.Certificate(ctx, c.Serial); err != nil {
			return err
		}
		_, err := st.Token(ctx, "subject")
		return err
	})
}

// BenchmarkTokenTxGrown is BenchmarkTokenTx from 16 goroutines on a store
// that has issued grownTokens tokens already, each with an audit entry of
// an exchange's size, with random jtis as the token service makes them:
// what an exchange's transaction costs once the tables outgrow SQLite's
// page cache, and with it the random inserts into the jti, cnf and audit
// key indexes. The setup takes about half a minute; the tokens inserted are
// bound to a stored certificate, as an exchange's are.
func BenchmarkTokenTxGrown(b *testing.B) {
	ctx := context.Background()
	st := openPath(b, filepath.Join(b.TempDir(), "sigil.db"))
	d := testDevice("grown")
	ch, e := testChallenge("grown", d), testEvidence("grown", d)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		b.Fatal(err)
	}
	c := testCertificate("grown", d, e)
	if err := completeEnrollment(ctx, st, ch.ID, d, e, c, nil); err != nil {
		b.Fatal(err)
	}
	insertTokens(b, st, testToken("subject", ""))
	pad := strings.Repeat("x", 700) // an exchange's audit entry is about 800 bytes
	token := func() (store.Token, store.AuditEntry) {
		jti := rand.Text()[:22]
		t := testToken(jti, "subject")
		t.CNF = c.Thumbprint()
		entry := storetest.Entry(jti+pad, "jti:"+jti)
		return t, entry
	}
	const grownTokens, perTx = 50_000, 500
	for range grownTokens / perTx {
		err := st.Tx(ctx, func(tx store.Tx) error {
			for range perTx {
				t, entry := token()
				if err := tx.InsertToken(ctx, t); err != nil {
					return err
				}
				if _, err := tx.AppendAudit(ctx, entry); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	driveTx(b, 16, func(int64) error {
		t, entry := token()
		return st.Tx(ctx, func(tx store.Tx) error {
			if err := tx.InsertToken(ctx, t); err != nil {
				return err
			}
			_, err := tx.AppendAudit(ctx, entry)
			return err
		})
	})
}
