package audit_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// cosigner is a witness key pair for tests: its cosignature/v1 signer and
// the verifier key an auditor configures.
type cosigner struct {
	signer note.Signer
	vkey   string
}

func newCosigner(t *testing.T, name string) cosigner {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	return cosigner{s, vkey}
}

// cosign appends c's cosignature of the note's text to data.
func (c cosigner) cosign(t *testing.T, data []byte) []byte {
	t.Helper()
	text, _, _ := strings.Cut(string(data), "\n\n")
	signed, err := note.Sign(&note.Note{Text: text + "\n"}, c.signer)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(string(signed), "\n\n")
	return append(append([]byte{}, data...), line...)
}

// TestWitnessKeyInterop: the key WitnessKey prints is one
// transparency-dev/formats (what omniwitness verifies log checkpoints
// with) accepts, and it verifies the checkpoint WitnessNote returns, not
// the log's note alone; our own verifier still opens the witness note.
func TestWitnessKeyInterop(t *testing.T) {
	s := newSigner(t, "log.test/x", newKey(t))
	signed, err := s.Sign(audit.Checkpoint{Origin: "log.test/x", Size: 3, Hash: make([]byte, 32), Time: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := fnote.NewVerifier(s.Verifier().WitnessKey())
	if err != nil {
		t.Fatalf("formats cannot read WitnessKey %q: %v", s.Verifier().WitnessKey(), err)
	}
	if _, err := note.Open(signed, note.VerifierList(theirs)); err == nil {
		t.Fatal("the log's note verifies under the Rekor-style key ID alone; WitnessNote would be needless")
	}
	forWitness, err := audit.WitnessNote(signed, s.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(forWitness, note.VerifierList(theirs)); err != nil {
		t.Fatalf("formats' verifier refuses the witness note: %v", err)
	}
	if _, err := audit.OpenCheckpoint(forWitness, s.Verifier()); err != nil {
		t.Fatalf("OpenCheckpoint of the witness note: %v", err)
	}
	other := newSigner(t, "log.test/x", newKey(t))
	if _, err := audit.WitnessNote(signed, other.Verifier()); !errors.Is(err, audit.ErrCheckpointSignature) {
		t.Fatalf("WitnessNote under another key: %v, want ErrCheckpointSignature", err)
	}
}

// TestRequireCosignatures: cosignatures count once per configured witness
// key; a missing one is a WitnessError naming it; a forged one, or a note
// without the log's signature, fails outright.
func TestRequireCosignatures(t *testing.T) {
	s := newSigner(t, "log.test/x", newKey(t))
	signed, err := s.Sign(audit.Checkpoint{Origin: "log.test/x", Size: 9, Hash: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	a, b, stranger := newCosigner(t, "a.test"), newCosigner(t, "b.test"), newCosigner(t, "a.test")
	var ws []note.Verifier
	for _, c := range []cosigner{a, b} {
		v, err := audit.ParseWitnessKey(c.vkey)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, v)
	}
	byA := a.cosign(t, signed)
	lines, _ := audit.SignatureLines(byA)
	forged := strings.Replace(string(byA), lines[1], lines[1][:len(lines[1])-6]+"AAAA=\n", 1)
	witnessOnly := "log.test/x\n9\n" + strings.SplitN(string(byA), "\n", 4)[2] + "\n\n" + lines[1]
	for _, tc := range []struct {
		name string
		note []byte
		min  int
		have int
		want error
	}{
		{"none required", signed, 0, 0, nil},
		{"one of two", byA, 1, 1, nil},
		{"both", b.cosign(t, byA), 2, 2, nil},
		{"the same witness twice", a.cosign(t, byA), 2, 1, audit.ErrTooFewCosignatures},
		{"a stranger under a's name", stranger.cosign(t, signed), 1, 0, audit.ErrTooFewCosignatures},
		{"missing", signed, 1, 0, audit.ErrTooFewCosignatures},
		{"forged", []byte(forged), 1, 0, audit.ErrCheckpointSignature},
		{"no log signature", []byte(witnessOnly), 1, 0, audit.ErrCheckpointSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have, err := audit.RequireCosignatures(tc.note, s.Verifier(), ws, tc.min)
			if !errors.Is(err, tc.want) || (err == nil || tc.want == audit.ErrTooFewCosignatures) && len(have) != tc.have {
				t.Fatalf("RequireCosignatures = %v, %v; want %d cosigners, %v", have, err, tc.have, tc.want)
			}
			var we *audit.WitnessError
			if errors.As(err, &we) && len(we.Missing) != len(ws)-tc.have {
				t.Errorf("missing %v", we.Missing)
			}
		})
	}
}

// FuzzCosigners: no note panics Cosigners, and it never names a witness
// unless the note verifies under the log key and that witness's key.
func FuzzCosigners(f *testing.F) {
	s, err := audit.NewSigner("log.test/x", newKey(f))
	if err != nil {
		f.Fatal(err)
	}
	signed, err := s.Sign(audit.Checkpoint{Origin: "log.test/x", Size: 1, Hash: make([]byte, 32)})
	if err != nil {
		f.Fatal(err)
	}
	skey, vkey, _ := note.GenerateKey(rand.Reader, "w.test")
	ws, _ := fnote.NewSignerForCosignatureV1(skey)
	wv, err := audit.ParseWitnessKey(vkey)
	if err != nil {
		f.Fatal(err)
	}
	text, _, _ := strings.Cut(string(signed), "\n\n")
	cosigned, _ := note.Sign(&note.Note{Text: text + "\n"}, ws)
	_, line, _ := strings.Cut(string(cosigned), "\n\n")
	f.Add(signed)
	f.Add(append(append([]byte{}, signed...), line...))
	f.Add([]byte("log.test/x\n1\nAAAA\n\n— w.test AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := audit.Cosigners(data, s.Verifier(), []note.Verifier{wv})
		if err != nil || len(names) == 0 {
			return
		}
		if _, err := note.Open(data, note.VerifierList(wv)); err != nil {
			t.Fatalf("named %v for a note the witness key does not verify: %v", names, err)
		}
		if _, err := audit.OpenCheckpoint(data, s.Verifier()); err != nil {
			t.Fatalf("named %v for a note the log key does not open: %v", names, err)
		}
	})
}
