package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/storetest"
)

// BenchmarkRenewalReads measures the two reads every renewal makes of the
// certificates (IdentityHolders and DeviceIdentities) for a device that
// renewed its one identity history times, each certificate still live.
// Their cost must not grow with history: compare the sub-benchmarks.
func BenchmarkRenewalReads(b *testing.B) {
	for _, history := range []int{1, 2000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			st, _ := openStore(b)
			ctx := context.Background()
			d, e, _ := storetest.Enroll(b, st, "bench", 0)
			const id = "spiffe://sigil.test/workload/bench"
			err := st.Tx(ctx, func(tx store.Tx) error {
				for i := range history {
					c := storetest.Certificate(storetest.Serial("bench", i), d, e)
					c.SPIFFEID, c.NotBefore = id, storetest.T0.Add(time.Duration(i)*time.Second)
					c.NotAfter = c.NotBefore.Add(time.Hour)
					c.DER = make([]byte, 600) // about a real certificate's size
					if err := tx.InsertCertificate(ctx, c); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			at := storetest.T0.Add(time.Minute)
			b.ResetTimer()
			for b.Loop() {
				if hs, err := st.IdentityHolders(ctx, id, at); err != nil || len(hs) != 1 {
					b.Fatalf("IdentityHolders = %v, %v", hs, err)
				}
				if ids, err := st.DeviceIdentities(ctx, d.EKHash, at); err != nil || len(ids) != 1 {
					b.Fatalf("DeviceIdentities = %v, %v", ids, err)
				}
			}
		})
	}
}

// BenchmarkDeviceCertificateReads measures CurrentDeviceCertificates, which
// device trust asks of every device on a policy reload and of a device a
// renewal distrusts, for a device with a few live certificates; with a
// plan that SQLite re-prepares on each binding, most of it is planning.
func BenchmarkDeviceCertificateReads(b *testing.B) {
	st, _ := openStore(b)
	ctx := context.Background()
	d, e, _ := storetest.Enroll(b, st, "bench", 0)
	err := st.Tx(ctx, func(tx store.Tx) error {
		for i := range 3 {
			c := storetest.Certificate(storetest.Serial("bench", i), d, e)
			c.NotBefore = storetest.T0.Add(time.Duration(i) * time.Second)
			c.NotAfter = c.NotBefore.Add(time.Hour)
			if err := tx.InsertCertificate(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	at := storetest.T0.Add(time.Minute)
	for b.Loop() {
		if cs, err := st.CurrentDeviceCertificates(ctx, d.EKHash, at); err != nil || len(cs) != 3 {
			b.Fatalf("CurrentDeviceCertificates = %d, %v", len(cs), err)
		}
	}
}
