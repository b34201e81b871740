package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// BoundToken is Token(jti, parent) bound to c: its cnf is c's thumbprint.
func BoundToken(jti, parent string, c store.Certificate) store.Token {
	t := Token(jti, parent)
	t.CNF = c.Thumbprint()
	return t
}

func testCertificateByThumbprint(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 2)
	for _, c := range certs {
		got, err := st.CertificateByThumbprint(ctx, c.Thumbprint())
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Fatalf("CertificateByThumbprint(%s) = %+v, %v; want %+v", c.Thumbprint(), got, err, c)
		}
	}
	for _, x5t := range []string{"", "nope", certs[0].Serial} {
		if _, err := st.CertificateByThumbprint(ctx, x5t); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CertificateByThumbprint(%q) = %v, want ErrNotFound", x5t, err)
		}
	}
}

// testRevokeCertificateRevokesTokens: revoking a certificate revokes the
// tokens bound to it, whatever their parent, and every token exchanged
// from those, bound to any certificate; its events come first the
// certificate's, then the tokens' by depth. Tokens bound to the device's
// other certificate, or to none stored, stay live, and no token can be
// stored bound to the revoked certificate afterwards.
func testRevokeCertificateRevokesTokens(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	_, _, certs := Enroll(t, st, "d1", 2)
	ext := ExternalToken(store.ExternalPrefix + "user")
	if err := st.InsertExternalToken(ctx, ext); err != nil {
		t.Fatal(err)
	}
	InsertTokens(t, st,
		BoundToken("A", "", certs[0]), BoundToken("B", "A", certs[1]), BoundToken("C", "B", certs[1]),
		BoundToken("F", ext.JTI, certs[0]), BoundToken("D", "", certs[1]), Token("U", ""))
	at := T0.Add(time.Minute)
	revoked, err := st.RevokeCertificate(ctx, certs[0].Serial, "key compromise", at)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Revoked{Certificates: []string{certs[0].Serial}, Tokens: []string{"A", "F", "B", "C"}}
	if !reflect.DeepEqual(revoked, want) {
		t.Fatalf("RevokeCertificate revoked %+v, want %+v", revoked, want)
	}
	reason := store.CertificateRevokedPrefix + "key compromise"
	for _, jti := range want.Tokens {
		tok, err := st.Token(ctx, jti)
		if err != nil || tok.RevokedAt == nil || !tok.RevokedAt.Equal(at) || tok.RevocationReason != reason {
			t.Errorf("token %s: revoked %v for %q (%v), want %v for %q", jti, tok.RevokedAt, tok.RevocationReason, err, at, reason)
		}
	}
	for _, jti := range []string{"D", "U", ext.JTI} {
		if tok, err := st.Token(ctx, jti); err != nil || tok.RevokedAt != nil {
			t.Errorf("token %s: revoked %v (%v), want live", jti, tok.RevokedAt, err)
		}
	}
	wantEvents := []store.RevocationEvent{{Seq: 1, Serial: certs[0].Serial, Thumbprint: certs[0].Thumbprint(),
		NotAfter: certs[0].NotAfter, RevokedAt: at, Reason: "key compromise"}}
	for _, jti := range want.Tokens {
		wantEvents = append(wantEvents, store.RevocationEvent{Seq: uint64(len(wantEvents) + 1), JTI: jti, RevokedAt: at, Reason: reason})
	}
	if events, err := st.RevocationEvents(ctx, 0, 0); err != nil || !reflect.DeepEqual(events, wantEvents) {
		t.Fatalf("RevocationEvents =\n%+v, %v\nwant\n%+v", events, err, wantEvents)
	}

	if _, err := st.RevokeCertificate(ctx, certs[0].Serial, "again", at); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second RevokeCertificate = %v, want ErrConflict", err)
	}
	if seq, err := st.LatestRevocationSeq(ctx); err != nil || seq != uint64(len(wantEvents)) {
		t.Fatalf("LatestRevocationSeq after a refused revocation = %d, %v; want %d", seq, err, len(wantEvents))
	}
	for _, tok := range []store.Token{BoundToken("late", "", certs[0]), BoundToken("late-child", "D", certs[0])} {
		if err := st.InsertToken(ctx, tok); !errors.Is(err, store.ErrCertificateRevoked) {
			t.Errorf("InsertToken %s bound to a revoked certificate = %v, want ErrCertificateRevoked", tok.JTI, err)
		}
	}
	InsertTokens(t, st, BoundToken("other", "D", certs[1]))
}

// testDisableDeviceRevokesTokens: disabling a device revokes the tokens
// bound to each of its certificates not revoked before, with their
// subtrees, after the certificates' events.
func testDisableDeviceRevokesTokens(t *testing.T, h *harness) {
	st := h.fresh(t)
	ctx := context.Background()
	d, _, certs := Enroll(t, st, "d1", 2)
	_, _, other := Enroll(t, st, "d2", 1)
	InsertTokens(t, st, BoundToken("A", "", certs[0]), BoundToken("B", "", certs[1]),
		BoundToken("C", "A", other[0]), BoundToken("O", "", other[0]))
	revoked, err := st.SetDeviceStatus(ctx, d.EKHash, store.DeviceDisabled, T0)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Revoked{Certificates: []string{certs[0].Serial, certs[1].Serial}, Tokens: []string{"A", "B", "C"}}
	if !reflect.DeepEqual(revoked, want) {
		t.Fatalf("SetDeviceStatus revoked %+v, want %+v", revoked, want)
	}
	events, err := st.RevocationEvents(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Serial+e.JTI+" "+e.Reason)
	}
	reason := store.CertificateRevokedPrefix + store.ReasonDeviceDisabled
	wantEvents := []string{certs[0].Serial + " " + store.ReasonDeviceDisabled, certs[1].Serial + " " + store.ReasonDeviceDisabled,
		"A " + reason, "B " + reason, "C " + reason}
	if !reflect.DeepEqual(got, wantEvents) {
		t.Fatalf("events %q, want %q", got, wantEvents)
	}
	if tok, _ := st.Token(ctx, "O"); tok.RevokedAt != nil {
		t.Error("a token of another device was revoked")
	}
}

// insertBoundRace: writers store tokens bound to one certificate, all
// exchanged from one root bound to another certificate (so that only the
// certificate can refuse them), raceOps each or until they are refused;
// writer 0, once every other one has one, revokes the certificate. Every
// token stored bound to it is revoked by that one revocation, with one
// event each after the certificate's, and a refused insert was refused for
// the certificate and stored nothing.
var insertBoundRace = race{
	name: "InsertTokenBoundToRevokedCertificate",
	setup: func(t testing.TB, st store.Store) {
		_, _, certs := Enroll(t, st, "race", 2)
		InsertTokens(t, st, BoundToken("root", "", certs[1]))
	},
	work: func(ctx context.Context, st store.Store, w, n int) ([]string, error) {
		cert := raceCertificate(0)
		if w == 0 {
			err := waitFor(ctx, "a token from every writer", func() (bool, error) {
				ts, err := st.TokenChildren(ctx, "root")
				return len(ts) >= n-1, err
			})
			if err != nil {
				return nil, err
			}
			revoked, err := st.RevokeCertificate(ctx, cert.Serial, "key compromise", T0)
			return revoked.Tokens, err
		}
		var lines []string
		for i := range raceOps {
			jti := fmt.Sprintf("w%d-%d", w, i)
			switch err := InsertAudited(ctx, st, BoundToken(jti, "root", cert)); {
			case err == nil:
				lines = append(lines, "stored "+jti)
			case errors.Is(err, store.ErrCertificateRevoked):
				return append(lines, "refused "+jti), nil
			default:
				return nil, err
			}
		}
		return lines, nil
	},
	check: func(t testing.TB, st store.Store, reports [][]string) {
		ctx := context.Background()
		revoked := map[string]bool{}
		for _, jti := range reports[0] {
			revoked[jti] = true
		}
		stored := 0
		for _, r := range reports[1:] {
			for _, line := range r {
				outcome, jti, _ := strings.Cut(line, " ")
				tok, err := st.Token(ctx, jti)
				switch {
				case outcome == "refused" && !errors.Is(err, store.ErrNotFound):
					t.Errorf("refused token %s: %v, want ErrNotFound", jti, err)
				case outcome == "stored" && (err != nil || tok.RevokedAt == nil || !revoked[jti]):
					t.Errorf("token %s bound to the certificate: revoked %v (%v); returned by the revocation: %v", jti, tok.RevokedAt, err, revoked[jti])
				}
				if outcome == "stored" {
					stored++
				}
			}
		}
		t.Logf("%d tokens stored, then revoked with their certificate; %d writers refused", stored, countPrefix(reports[1:], "refused"))
		if stored != len(revoked) {
			t.Errorf("%d tokens stored bound to the certificate; its revocation revoked %d", stored, len(revoked))
		}
		if root, err := st.Token(ctx, "root"); err != nil || root.RevokedAt != nil {
			t.Errorf("the root, bound to another certificate: revoked %v (%v)", root.RevokedAt, err)
		}
		events, err := st.RevocationEvents(ctx, 0, 0)
		if err != nil || len(events) != len(revoked)+1 || events[0].Serial != raceCertificate(0).Serial {
			t.Fatalf("revocation events %+v, %v; want the certificate's and %d tokens'", events, err, len(revoked))
		}
		for i, e := range events[1:] {
			if e.Seq != uint64(i+2) || e.JTI != reports[0][i] {
				t.Fatalf("event %d is %d %s, want %d %s", i+1, e.Seq, e.JTI, i+2, reports[0][i])
			}
		}
	},
}

// raceCertificate is the i-th certificate Enroll stored for the device
// "race".
func raceCertificate(i int) store.Certificate {
	d := Device("race")
	c := Certificate(Serial("race", i), d, Evidence("race", d))
	c.NotBefore = T0.Add(time.Duration(i) * time.Minute)
	c.NotAfter = c.NotBefore.Add(time.Hour)
	return c
}
