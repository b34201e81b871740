package device_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// BenchmarkCurrentCertificates: the current certificates of a device that
// has renewed history times (each renewal's certificate kept after it
// expires), as a policy reload asks them of every device, on SQLite.
// baseline-all-then-filter is how CurrentCertificates read them before
// (every certificate of the device, DER included, filtered in Go), in the
// same run; compare its ns/op, B/op and allocs/op with current's.
func BenchmarkCurrentCertificates(b *testing.B) {
	for _, history := range []int{100, 2000} {
		b.Run(fmt.Sprintf("history-%d", history), func(b *testing.B) {
			ctx := context.Background()
			st, err := backend.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "sigil.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			d, _, certs := storetest.Enroll(b, st, "renewing", history+2)
			now := certs[history].NotAfter.Add(-time.Second) // the last two are current
			b.Run("baseline-all-then-filter", func(b *testing.B) {
				for b.Loop() {
					all, err := st.DeviceCertificates(ctx, d.EKHash)
					if err != nil {
						b.Fatal(err)
					}
					if cur := slices.DeleteFunc(all, func(c store.Certificate) bool {
						return c.RevokedAt != nil || !now.Before(c.NotAfter)
					}); len(cur) != 2 {
						b.Fatalf("%d current", len(cur))
					}
				}
			})
			b.Run("current", func(b *testing.B) {
				for b.Loop() {
					cur, err := device.CurrentCertificates(ctx, st, d.EKHash, now)
					if err != nil || len(cur) != 2 {
						b.Fatalf("%d current, %v", len(cur), err)
					}
				}
			})
		})
	}
}
