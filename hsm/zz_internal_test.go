package hsm

import (
	"context"
	"crypto"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
)

func hopTimer(d time.Duration, f func() ([]byte, error)) ([]byte, error) {
	ch := make(chan result[[]byte], 1)
	go func() { v, err := f(); ch <- result[[]byte]{v, err} }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-t.C:
		return nil, context.DeadlineExceeded
	}
}

func TestZZHop(t *testing.T) {
	s := zzSigner(t)
	dg := sha256.Sum256([]byte("x"))
	f := func() ([]byte, error) { return s.Sign(nil, dg[:], crypto.SHA256) }
	var a, b, c time.Duration
	for i := 0; i < 10000; i++ {
		t0 := time.Now()
		f()
		t1 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		do(ctx, f, nil)
		cancel()
		t2 := time.Now()
		hopTimer(5*time.Second, f)
		t3 := time.Now()
		a += t1.Sub(t0); b += t2.Sub(t1); c += t3.Sub(t2)
	}
	t.Logf("inline %v do %v timer %v", a/10000, b/10000, c/10000)
}

var zzSigner func(t *testing.T) crypto11.Signer
