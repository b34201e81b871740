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
