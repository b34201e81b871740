package audit_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

func TestOpenCheckpointFixtures(t *testing.T) {
	v := fixtureVerifier(t)
	want := fixtureCheckpoint(t)
	for _, tc := range []struct {
		name    string
		want    error
		hasTime bool
	}{
		{"checkpoint.note", nil, true},
		{"checkpoint-no-time.note", nil, false},
		{"checkpoint-cosigned.note", nil, true},
		{"checkpoint-other-key.note", audit.ErrCheckpointSignature, false},
		{"checkpoint-bad-signature.note", audit.ErrCheckpointSignature, false},
		{"checkpoint-wrong-origin.note", audit.ErrOriginMismatch, false},
		{"checkpoint-trailing-garbage.note", audit.ErrMalformedCheckpoint, false},
		{"checkpoint-leading-zero-size.note", audit.ErrMalformedCheckpoint, false},
		{"checkpoint-unknown-extension.note", audit.ErrMalformedCheckpoint, false},
		{"checkpoint-short-hash.note", audit.ErrMalformedCheckpoint, false},
		{"checkpoint-local-time.note", audit.ErrMalformedCheckpoint, false},
		{"checkpoint-unsigned.note", audit.ErrMalformedCheckpoint, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := audit.OpenCheckpoint(fixture(t, tc.name), v)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("OpenCheckpoint error = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if got.Origin != want.Origin || got.Size != want.Size || !bytes.Equal(got.Hash, want.Hash) {
				t.Errorf("OpenCheckpoint = %+v, want %+v", got, want)
			}
			if got.Time.IsZero() == tc.hasTime || (tc.hasTime && !got.Time.Equal(want.Time)) {
				t.Errorf("Time = %v, want %v (stated: %v)", got.Time, want.Time, tc.hasTime)
			}
		})
	}
}

func TestOpenCheckpointSizeCap(t *testing.T) {
	v := fixtureVerifier(t)
	big := fixture(t, "checkpoint.note")
	// Pad with long unknown signatures (ignored) up to the cap, then over.
	pad := func(i int) string {
		return fmt.Sprintf("— witness.example/w%d %s\n", i, base64.StdEncoding.EncodeToString(make([]byte, 900)))
	}
	for i := 0; len(big)+len(pad(i)) <= audit.MaxCheckpointSize; i++ {
		big = append(big, pad(i)...)
	}
	if _, err := audit.OpenCheckpoint(big, v); err != nil {
		t.Fatalf("a note of %d bytes: %v", len(big), err)
	}
	big = append(big, pad(99)...)
	_, err := audit.OpenCheckpoint(big, v)
	if !errors.Is(err, audit.ErrMalformedCheckpoint) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a note of %d bytes: error = %v, want ErrMalformedCheckpoint for its size", len(big), err)
	}
}

func TestSignOpenRoundTrip(t *testing.T) {
	s := newSigner(t, origin, newKey(t))
	for _, cp := range []audit.Checkpoint{
		{Origin: origin, Size: 0, Hash: sha256Of(""), Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Origin: origin, Size: 1<<64 - 1, Hash: sha256Of("x"), Time: time.Date(2025, 1, 1, 0, 0, 0, 1, time.FixedZone("X", 7200))},
		{Origin: origin, Size: 42, Hash: sha256Of("y")},
	} {
		n, err := s.Sign(cp)
		if err != nil {
			t.Fatalf("Sign(%+v): %v", cp, err)
		}
		got, err := audit.OpenCheckpoint(n, s.Verifier())
		if err != nil {
			t.Fatalf("OpenCheckpoint: %v\n%s", err, n)
		}
		if got.Size != cp.Size || !bytes.Equal(got.Hash, cp.Hash) || !got.Time.Equal(cp.Time) {
			t.Errorf("round trip: %+v, want %+v", got, cp)
		}
		peek, err := audit.PeekCheckpoint(n)
		if err != nil || peek.Size != cp.Size {
			t.Errorf("PeekCheckpoint = %+v, %v", peek, err)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	s := newSigner(t, origin, newKey(t))
	for name, cp := range map[string]audit.Checkpoint{
		"another origin": {Origin: "other.example/log", Size: 1, Hash: sha256Of("")},
		"short hash":     {Origin: origin, Size: 1, Hash: []byte{1, 2}},
		"year 10000":     {Origin: origin, Size: 1, Hash: sha256Of(""), Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := s.Sign(cp); err == nil {
			t.Errorf("%s: Sign succeeded", name)
		}
	}
}

// garbageSigner returns signatures that do not verify, as a misconfigured
// HSM key might.
type garbageSigner struct{ crypto.Signer }

func (g garbageSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, nil
}

func TestSignChecksTheSignature(t *testing.T) {
	s := newSigner(t, origin, garbageSigner{newKey(t)})
	if _, err := s.Sign(audit.Checkpoint{Origin: origin, Size: 1, Hash: sha256Of("")}); err == nil {
		t.Fatal("Sign returned a note whose signature does not verify")
	}
}

func TestKeyTypes(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"RSA": rsaKey, "P-384": p384, "Ed25519": ed} {
		if _, err := audit.NewSigner(origin, k); err == nil {
			t.Errorf("NewSigner accepted a %s key", name)
		}
	}
	for _, name := range []string{"", "with space", "a+b", "tab\there", "new\nline"} {
		if _, err := audit.NewSigner(name, newKey(t)); err == nil {
			t.Errorf("NewSigner accepted the name %q", name)
		}
	}
}

// TestKeyHashConvention pins the key ID: SHA-256(name || "\n" || 0x02 ||
// SPKI)[:4], and the verifier key text form.
func TestKeyHashConvention(t *testing.T) {
	k := newKey(t)
	v, err := audit.NewVerifier(origin, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append(append([]byte(origin+"\n"), 0x02), spki...))
	if want := binary.BigEndian.Uint32(sum[:4]); v.KeyHash() != want {
		t.Fatalf("KeyHash = %08x, want %08x", v.KeyHash(), want)
	}
	want := fmt.Sprintf("%s+%08x+%s", origin, v.KeyHash(), base64.StdEncoding.EncodeToString(append([]byte{2}, spki...)))
	if v.String() != want {
		t.Fatalf("String = %s, want %s", v.String(), want)
	}
	// The note the signer writes names the key by that ID.
	n, err := newSigner(t, origin, k).Sign(audit.Checkpoint{Origin: origin, Size: 1, Hash: sha256Of("")})
	if err != nil {
		t.Fatal(err)
	}
	sig := n[bytes.LastIndexByte(n[:len(n)-1], ' ')+1 : len(n)-1]
	raw, _ := base64.StdEncoding.DecodeString(string(sig))
	if binary.BigEndian.Uint32(raw) != v.KeyHash() {
		t.Fatal("the signature line does not carry the key ID")
	}
	if _, err := note.Open(n, note.VerifierList(v)); err != nil {
		t.Fatalf("note.Open with the Verifier as a note.Verifier: %v", err)
	}
}

func TestParseVerifierPEM(t *testing.T) {
	good := fixture(t, "log-key.pub.pem")
	if _, err := audit.ParseVerifierPEM(origin, good); err != nil {
		t.Fatalf("ParseVerifierPEM: %v", err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	for name, data := range map[string][]byte{
		"empty":          nil,
		"private key":    fixture(t, "log-key.pem"),
		"two blocks":     append(bytes.Clone(good), good...),
		"trailing text":  append(bytes.Clone(good), "junk"...),
		"rsa key":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER}),
		"not a key":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")}),
		"certificate pm": bytes.Replace(good, []byte("PUBLIC KEY"), []byte("CERTIFICATE"), 2),
	} {
		if _, err := audit.ParseVerifierPEM(origin, data); err == nil {
			t.Errorf("%s: ParseVerifierPEM succeeded", name)
		}
	}
	if _, err := audit.ParseVerifierPEM("bad name", good); err == nil {
		t.Error("ParseVerifierPEM accepted an invalid name")
	}
}

func FuzzOpenCheckpoint(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "checkpoint*.note"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	v := fixtureVerifier(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := audit.OpenCheckpoint(data, v)
		peek, perr := audit.PeekCheckpoint(data)
		if err != nil {
			if !errors.Is(err, audit.ErrMalformedCheckpoint) && !errors.Is(err, audit.ErrCheckpointSignature) && !errors.Is(err, audit.ErrOriginMismatch) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if cp.Origin != origin || len(cp.Hash) != audit.HashSize {
			t.Fatalf("accepted %+v", cp)
		}
		if perr != nil || peek.Size != cp.Size || !bytes.Equal(peek.Hash, cp.Hash) {
			t.Fatalf("PeekCheckpoint disagrees with OpenCheckpoint: %+v, %v", peek, perr)
		}
	})
}

func sha256Of(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
