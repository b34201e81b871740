package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriters: 64 goroutines each write certificates, challenges
// and revocations while reading; every operation succeeds (no SQLITE_BUSY).
func TestConcurrentWriters(t *testing.T) {
	st, _ := openStore(t)
	ctx := context.Background()
	d, e, _ := enrolled(t, st, "d1", 0)
	const goroutines, perG = 64, 5
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*perG)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range perG {
				if err := writeAndRead(ctx, st, d, e, fmt.Sprintf("%02x%02x", g, i)); err != nil {
					errs <- err
				}
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	certs, err := st.DeviceCertificates(ctx, d.EKHash)
	if err != nil || len(certs) != goroutines*perG {
		t.Fatalf("DeviceCertificates = %d, %v; want %d", len(certs), err, goroutines*perG)
	}
	t.Logf("%d writers x %d iterations (5 writes, 2 reads each) in %v", goroutines, perG, time.Since(began))
}

func writeAndRead(ctx context.Context, st Store, d Device, e Evidence, serial string) error {
	c := testCertificate(serial, d, e)
	if err := st.InsertCertificate(ctx, c); err != nil {
		return err
	}
	if _, err := st.Certificate(ctx, serial); err != nil {
		return err
	}
	ch := testChallenge(serial, d)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		return err
	}
	err := st.Tx(ctx, func(tx Tx) error {
		if _, err := tx.ConsumeChallenge(ctx, ch.ID, t0); err != nil {
			return err
		}
		return tx.RevokeCertificate(ctx, serial, "superseded", t0)
	})
	if err != nil {
		return err
	}
	if _, err := st.Revocations(ctx, t0); err != nil {
		return err
	}
	_, err = st.BindDevice(ctx, d, t0)
	return err
}
