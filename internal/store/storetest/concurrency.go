package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// testConcurrentWriters: 64 goroutines each write certificates, challenges
// and revocations while reading; every operation succeeds (no SQLITE_BUSY,
// no deadlock or serialization failure).
func testConcurrentWriters(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, e, _ := Enroll(t, st, "d1", 0)
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

func writeAndRead(ctx context.Context, st store.Store, d store.Device, e store.Evidence, serial string) error {
	c := Certificate(serial, d, e)
	if err := st.InsertCertificate(ctx, c); err != nil {
		return err
	}
	if _, err := st.Certificate(ctx, serial); err != nil {
		return err
	}
	ch := Challenge(serial, d)
	if err := st.CreateChallenge(ctx, ch); err != nil {
		return err
	}
	err := st.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.ConsumeChallenge(ctx, ch.ID, T0); err != nil {
			return err
		}
		_, err := tx.RevokeCertificate(ctx, serial, "superseded", T0)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := st.Revocations(ctx, T0); err != nil {
		return err
	}
	_, err = st.BindDevice(ctx, d, T0)
	return err
}

// testClose: after Close, calls fail, and not as if a record were missing.
func testClose(t *testing.T, h *harness) {
	st, err := h.b.Open(context.Background(), h.b.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Ping(context.Background()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
	if _, err := st.Device(context.Background(), "x"); errors.Is(err, store.ErrNotFound) || err == nil {
		t.Fatalf("Device after Close = %v, want a closed-database error", err)
	}
	err = st.Tx(context.Background(), func(store.Tx) error { t.Error("fn ran"); return nil })
	if err == nil {
		t.Fatal("Tx after Close succeeded")
	}
}
