package enroll_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// TestRebind enrolls one TPM twice (this replaces the silent rebind of
// before: a new AK rebinds the device only when the enrollment asks to
// replace it). The same AK again is a second identity on the device; a new
// AK without ReplaceAK is refused before any challenge with a message that
// says what to do; with ReplaceAK it rebinds if policy permits "rebind",
// audited with the identities it affects, and is denied, leaving the
// device bound to the first AK, if it does not.
func TestRebind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policy   func(t testing.TB) string
		sameAK   bool // the second enrollment reuses the first AK
		replace  bool
		mismatch bool // refused with ErrAKMismatch
		denied   bool
		wantPrev bool // Issued.PreviousAK is the first AK
	}{
		{"new AK replacing with rebind permitted", func(testing.TB) string { return devPolicy }, false, true, false, false, true},
		{"new AK without asking to replace", func(testing.TB) string { return devPolicy }, false, false, true, false, false},
		{"same AK again", func(testing.TB) string { return devPolicy }, true, false, false, false, false},
		{"new AK replacing without rebind permission", noRebindPolicy, false, true, false, true, false},
		{"same AK again without rebind permission", noRebindPolicy, true, false, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDevice(t, testenv.DevMeasurements())
			srv := newServer(t, d.sw.EKCA.Cert, withPolicy(tc.policy(t)))
			ctx := testCtx(t)
			first, iss1 := d.enroll(t, srv.svc, workload("a"))
			ak := first.ak
			if !tc.sameAK {
				ak = d.newAK(t)
			}
			if tc.mismatch {
				_, err := srv.svc.Challenge(ctx, d.challengeRequest(ak, workload("b")))
				if !errors.Is(err, enroll.ErrAKMismatch) || !strings.Contains(err.Error(), "--host-state") || !strings.Contains(err.Error(), "--replace-ak") {
					t.Fatalf("Challenge with another AK = %v, want ErrAKMismatch naming --host-state and --replace-ak", err)
				}
				if dev, _ := srv.store.Device(ctx, ekHashOf(d)); dev.AKHash != iss1.Result.AK.Hash {
					t.Errorf("device bound to AK %s after a refused enrollment, want the first AK", dev.AKHash)
				}
				return
			}
			begin := d.begin
			if tc.replace {
				begin = d.beginReplace
			}
			a := begin(t, srv.svc, ak, workload("b"))
			iss2, err := srv.svc.Complete(ctx, a.req)
			dev, derr := srv.store.Device(ctx, ekHashOf(d))
			if derr != nil {
				t.Fatal(derr)
			}
			if tc.denied {
				var denied *enroll.DeniedError
				if !errors.As(err, &denied) || !strings.Contains(err.Error(), "rebind") {
					t.Fatalf("second enrollment = %v, want a *DeniedError about the rebind", err)
				}
				if dev.AKHash != iss1.Result.AK.Hash {
					t.Errorf("device bound to AK %s after a denied rebind, want the first AK %s", dev.AKHash, iss1.Result.AK.Hash)
				}
				if n := deviceCertificates(t, srv.store, ekHashOf(d)); n != 1 {
					t.Errorf("%d certificates stored, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("second enrollment: %v", err)
			}
			wantPrev := ""
			if tc.wantPrev {
				wantPrev = iss1.Result.AK.Hash
			}
			if iss2.PreviousAK != wantPrev {
				t.Errorf("PreviousAK = %q, want %q", iss2.PreviousAK, wantPrev)
			}
			if dev.AKHash != iss2.Result.AK.Hash {
				t.Errorf("device bound to AK %s, want the second enrollment's %s", dev.AKHash, iss2.Result.AK.Hash)
			}
			if n := deviceCertificates(t, srv.store, ekHashOf(d)); n != 2 {
				t.Errorf("%d certificates stored, want 2", n)
			}
			repl := akReplacements(t, srv.store)
			switch {
			case !tc.wantPrev && len(repl) != 0:
				t.Errorf("AK replacements logged %+v, want none", repl)
			case tc.wantPrev && (len(repl) != 1 || repl[0].PreviousAK != wantPrev || repl[0].AKHash != dev.AKHash ||
				!slices.Equal(repl[0].Affected, []string{workload("a")}) || repl[0].Recovery == ""):
				t.Errorf("AK replacements logged %+v, want one from %s to %s affecting %s, with recovery", repl, wantPrev, dev.AKHash, workload("a"))
			}
		})
	}
}

// akReplacements are the DeviceAKReplaced entries of st's audit log.
func akReplacements(t testing.TB, st store.Store) []audit.AKReplacement {
	t.Helper()
	ctx := testCtx(t)
	n, err := st.AuditSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.AuditEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.AKReplacement
	for _, r := range raw {
		e, err := audit.Decode(r)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != audit.DeviceAKReplaced {
			continue
		}
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *p.(*audit.AKReplacement))
	}
	return out
}

// TestOneAKManyIdentities: one TPM, one AK, several identities, each with
// its own key certified over its own nonce; their renewals run
// concurrently and each succeeds on its own; policy saw the identities
// the device already held.
func TestOneAKManyIdentities(t *testing.T) {
	t.Parallel()
	const n = 4
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	ak := d.newAK(t)
	attempts := make([]*attempt, n)
	for i := range n {
		attempts[i] = d.begin(t, srv.svc, ak, workload(string(rune('a'+i))))
	}
	issued := make([]*enroll.Issued, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { issued[i], errs[i] = srv.svc.Complete(ctx, attempts[i].req) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent enrollment %d on one AK: %v", i, err)
		}
		if issued[i].PreviousAK != "" {
			t.Errorf("enrollment %d rebound the device (PreviousAK %s)", i, issued[i].PreviousAK)
		}
	}
	if n := deviceCertificates(t, srv.store, ekHashOf(d)); n != 4 {
		t.Fatalf("%d certificates stored, want 4", n)
	}
	akHash := issued[0].Result.AK.Hash
	for round := range 2 {
		for i := range n {
			wg.Go(func() {
				cert := leaf(t, issued[i])
				ch, err := srv.svc.RenewChallenge(ctx, cert)
				if err != nil {
					errs[i] = err
					return
				}
				if ch.AKHash != akHash {
					errs[i] = errors.New("renewal challenge names AK " + ch.AKHash + ", not the device's")
					return
				}
				req := renewRequest(t, attempts[i], ch)
				req.AKHash = ch.AKHash
				issued[i], errs[i] = srv.svc.Renew(ctx, cert, req)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: concurrent renewal of %s: %v", round, attempts[i].identity, err)
			}
		}
	}
}

// TestRenewAfterAKReplaced: after the host's AK was replaced, a renewal by
// a workload still quoting with the old AK is refused with ErrAKReplaced,
// whether it says which AK it quoted with or not, in words that say what
// happened and what to do; quoting with the new AK, the same key renews.
func TestRenewAfterAKReplaced(t *testing.T) {
	t.Parallel()
	d := newDevice(t, testenv.DevMeasurements())
	srv := newServer(t, d.sw.EKCA.Cert)
	ctx := testCtx(t)
	a, iss := d.enroll(t, srv.svc, workload("orders"))
	oldAK := iss.Result.AK.Hash
	b := d.beginReplace(t, srv.svc, d.newAK(t), workload("payments"))
	if _, err := srv.svc.Complete(ctx, b.req); err != nil {
		t.Fatalf("replacing the AK: %v", err)
	}
	cert := leaf(t, iss)
	for _, declare := range []bool{true, false} {
		ch, err := srv.svc.RenewChallenge(ctx, cert)
		if err != nil {
			t.Fatal(err)
		}
		req := renewRequest(t, a, ch)
		if declare {
			req.AKHash = oldAK
		}
		_, err = srv.svc.Renew(ctx, cert, req)
		if !errors.Is(err, enroll.ErrAKReplaced) {
			t.Fatalf("renewal quoting with the old AK (declared %v) = %v, want ErrAKReplaced", declare, err)
		}
		for _, want := range []string{oldAK, ch.AKHash, "enrolls again", "--host-state"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("renewal refusal %q does not say %q", err, want)
			}
		}
	}
	ch, err := srv.svc.RenewChallenge(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	req := api.RenewRequest{ChallengeID: ch.ID, Platform: quote(t, b.ak, ch.Nonce), CSR: csrFor(t, a.key, a.identity), AKHash: ch.AKHash}
	if _, err := srv.svc.Renew(ctx, cert, req); err != nil {
		t.Fatalf("renewal with the host's new AK: %v", err)
	}
}
