package attest

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/testenv"
)

// The recorded enrollment and renewal quotes, written in tpm2-tools'
// formats, pass tpm2_checkquote; each defect an auditor must catch makes
// it fail.
func TestToolsQuoteCheckQuote(t *testing.T) {
	t.Parallel()
	enroll, err := ParseEvidence(readTestdata(t, "enroll.json"))
	if err != nil {
		t.Fatal(err)
	}
	renew, err := ParseRenewal(readTestdata(t, "renew.json"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(pcr int) func(q *ToolsQuote) {
		return func(q *ToolsQuote) { q.PCRs[pcrOffset(pcr)] ^= 1 }
	}
	tests := []struct {
		name   string
		quote  func() (*ToolsQuote, error)
		tamper func(q *ToolsQuote)
		ok     bool
	}{
		{"enroll", enroll.ToolsQuote, nil, true},
		{"renew", renew.ToolsQuote, nil, true},
		{"enroll-pcr-0-flipped", enroll.ToolsQuote, flip(0), false},
		{"renew-pcr-7-flipped", renew.ToolsQuote, flip(7), false},
		{"enroll-pcr-23-flipped", enroll.ToolsQuote, flip(23), false},
		{"wrong-nonce", enroll.ToolsQuote, func(q *ToolsQuote) { q.Nonce = renew.Nonce }, false},
		{"other-ak", renew.ToolsQuote, func(q *ToolsQuote) {
			other, _ := hex.DecodeString(strings.Repeat("00", 4))
			q.AKPublic = append(q.AKPublic[:len(q.AKPublic)-4], other...)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q, err := tt.quote()
			if err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(q)
			}
			dir := t.TempDir()
			if err := q.Write(dir); err != nil {
				t.Fatal(err)
			}
			out, ok := testenv.CheckQuote(t, dir)
			if ok != tt.ok {
				t.Fatalf("tpm2_checkquote accepted = %v, want %v:\n%s", ok, tt.ok, out)
			}
		})
	}
}

// The files are tpm2-tools' formats: ak.pub is the TPMT_PUBLIC with its
// size, pcrs.bin one TPML_PCR_SELECTION of the SHA-256 bank and the 24
// values in three TPML_DIGESTs.
func TestToolsQuoteLayout(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvidence(readTestdata(t, "enroll.json"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := ev.ToolsQuote()
	if err != nil {
		t.Fatal(err)
	}
	if n := int(q.AKPublic[0])<<8 | int(q.AKPublic[1]); n != len(ev.AK.Public) || string(q.AKPublic[2:]) != string(ev.AK.Public) {
		t.Errorf("ak.pub is not TPM2B_PUBLIC of the recorded AK: size %d, want %d", n, len(ev.AK.Public))
	}
	if want := pcrSelectionsSize + 4 + 3*digestListSize; len(q.PCRs) != want {
		t.Errorf("pcrs.bin is %d bytes, want %d", len(q.PCRs), want)
	}
	for _, p := range ev.Platform.PCRs {
		if p.Alg == "sha256" && string(q.PCRs[pcrOffset(p.Index):pcrOffset(p.Index)+32]) != string(p.Digest) {
			t.Errorf("pcrs.bin does not hold PCR %d's value where tpm2-tools reads it", p.Index)
		}
	}
	if got := q.PCRs[:8]; hex.EncodeToString(got) != "010000000b0003ff" {
		t.Errorf("pcrs.bin starts %x, want one selection of sha256 (0x000b), 3 bytes", got)
	}
	dir := t.TempDir()
	if err := q.Write(dir); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{ToolsMessage: q.Message, ToolsSignature: q.Signature, ToolsEventLog: ev.Platform.EventLog,
		ToolsNonce: []byte(hex.EncodeToString(ev.Nonce) + "\n")} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != string(want) {
			t.Errorf("%s: %v, or not the recorded bytes", name, err)
		}
	}
}

// EntryQuote finds the quote of the recorded audit entries, and refuses
// one whose evidence does not hash to the entry's digest.
func TestEntryQuote(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"enroll-entry.json", "renew-entry.json"} {
		e, err := audit.Decode(readTestdata(t, name))
		if err != nil {
			t.Fatal(err)
		}
		serial, q, err := EntryQuote(e)
		if err != nil || serial == "" || q == nil {
			t.Fatalf("%s: serial %q, %v", name, serial, err)
		}
		e.Data = []byte(strings.Replace(string(e.Data), `"evidence_digest":"`, `"evidence_digest":"00`, 1))
		if _, _, err := EntryQuote(e); err == nil || !strings.Contains(err.Error(), "evidence digest") {
			t.Errorf("%s with another digest: %v, want an evidence digest mismatch", name, err)
		}
	}
	if _, _, err := EntryQuote(audit.Entry{Kind: audit.CertificateRevoked, Data: []byte(`{"serial":"01"}`)}); err != ErrNoQuote {
		t.Errorf("revocation entry: %v, want ErrNoQuote", err)
	}
}

// A record without a SHA-256 quote, or without the values it quotes, has
// no tpm2-tools quote.
func TestToolsQuoteRefuses(t *testing.T) {
	t.Parallel()
	ev, err := ParseEvidence(readTestdata(t, "enroll.json"))
	if err != nil {
		t.Fatal(err)
	}
	noValues := *ev
	noValues.Platform.PCRs = nil
	if _, err := noValues.ToolsQuote(); err == nil || !strings.Contains(err.Error(), "no recorded SHA-256 value of quoted PCR") {
		t.Errorf("without PCR values: %v", err)
	}
	var sha1Only []Quote
	for _, q := range ev.Platform.Quotes {
		if _, sel, err := sha256Quote([]Quote{q}); err != nil || sel.PCRs == nil {
			sha1Only = append(sha1Only, q)
		}
	}
	noQuote := *ev
	noQuote.Platform.Quotes = sha1Only
	if _, err := noQuote.ToolsQuote(); err == nil || !strings.Contains(err.Error(), "no quote over the SHA-256 PCR bank") {
		t.Errorf("without a SHA-256 quote: %v", err)
	}
	garbled := *ev
	garbled.Platform.Quotes = []Quote{{Quote: []byte{0xff, 0x54}}}
	if _, err := garbled.ToolsQuote(); err == nil || !strings.Contains(err.Error(), "decode TPMS_ATTEST") {
		t.Errorf("garbled quote: %v", err)
	}
}

// EntryQuote reads audit entries from an export, which an auditor got from
// elsewhere: it never panics, whatever the bytes.
func FuzzEntryQuote(f *testing.F) {
	for _, name := range []string{"enroll-entry.json", "renew-entry.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "v1", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := audit.Decode(data)
		if err != nil {
			return
		}
		_, _, _ = EntryQuote(e)
	})
}

// pcrOffset is where the value of SHA-256 PCR i starts in pcrs.bin of a
// quote of all 24.
func pcrOffset(i int) int {
	return pcrSelectionsSize + 4 + i/digestsPerList*digestListSize + 4 + i%digestsPerList*digestSize + 2
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v1", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
