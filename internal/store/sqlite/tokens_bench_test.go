package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
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
