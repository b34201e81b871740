package witness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// fixture is a log note and a witness that cosigns it.
type fixture struct {
	c       *Client
	logNote []byte
	line    string // the witness's valid cosignature line
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewSigner("log.test", k)
	if err != nil {
		t.Fatal(err)
	}
	logNote, err := s.Sign(audit.Checkpoint{Origin: "log.test", Size: 1, Hash: make([]byte, 32), Time: time.Unix(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "w.test")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(logNote, note.VerifierList(s.Verifier()))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(&note.Note{Text: n.Text}, ws)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient("http://127.0.0.1:1", vkey, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(string(cosigned), "\n\n")
	return fixture{c: c, logNote: logNote, line: line}
}

// TestAnswer: every answer a witness can give, and answers it must not.
func TestAnswer(t *testing.T) {
	f := newFixture(t)
	tampered := f.line[:len(f.line)-6] + "AAAA=\n"
	for _, tc := range []struct {
		name   string
		status int
		ctype  string
		body   string
		want   error
		size   uint64
	}{
		{"cosigned", 200, "", f.line, nil, 0},
		{"cosigned among other lines", 200, "", "— other.test AAAAAAAA\n" + f.line, nil, 0},
		{"stale, with its size", 409, "text/x.tlog.size", "42\n", nil, 42},
		{"conflict", 409, "text/plain", "root mismatch", ErrConflict, 0},
		{"unknown log", 404, "", "", ErrUnknownLog, 0},
		{"log signature", 403, "", "", ErrLogSignature, 0},
		{"bad proof", 422, "", "", ErrInconsistent, 0},
		{"rate limited", 429, "", "", ErrPushback, 0},
		{"unavailable", 503, "", "", ErrPushback, 0},
		{"empty 200", 200, "", "", ErrBadCosignature, 0},
		{"tampered cosignature", 200, "", tampered, ErrBadCosignature, 0},
		{"no newline", 200, "", strings.TrimSuffix(f.line, "\n"), ErrBadCosignature, 0},
		{"a checkpoint instead", 200, "", string(f.logNote), ErrBadCosignature, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := f.c.answer(tc.status, tc.ctype, []byte(tc.body), f.logNote)
			var se *SizeError
			switch {
			case tc.size != 0:
				if !errors.As(err, &se) || se.Size != tc.size {
					t.Fatalf("answer = %v, want SizeError %d", err, tc.size)
				}
			case tc.want == nil:
				if err != nil || string(line) != f.line {
					t.Fatalf("answer = %q, %v; want the cosignature", line, err)
				}
			case !errors.Is(err, tc.want):
				t.Fatalf("answer = %q, %v; want %v", line, err, tc.want)
			}
		})
	}
	if _, err := f.c.answer(409, "text/x.tlog.size", []byte("-1"), f.logNote); err == nil || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("a size that does not parse: %v", err)
	}
}

// FuzzAnswer: no answer panics, and only the witness's valid cosignature
// is ever returned as one.
func FuzzAnswer(f *testing.F) {
	fx := newFixture(f)
	f.Add(200, "", []byte(fx.line))
	f.Add(409, "text/x.tlog.size", []byte("7\n"))
	f.Add(200, "", []byte("— w.test AAAA\n"))
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		line, err := fx.c.answer(status, ctype, body, fx.logNote)
		if err == nil {
			if _, err := note.Open(append(append([]byte{}, fx.logNote...), line...), note.VerifierList(fx.c.Verifier())); err != nil {
				t.Fatalf("returned %q, which does not verify: %v", line, err)
			}
		}
	})
}
