package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

func TestDecodeGolden(t *testing.T) {
	for name, want := range goldenEntries() {
		t.Run(name, func(t *testing.T) {
			data := fixture(t, name)
			got, err := audit.Decode(data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Kind != want.Kind || !got.Time.Equal(want.Time) || !bytes.Equal(got.Data, want.Data) {
				t.Fatalf("Decode = %+v, want %+v", got, want)
			}
			again, err := audit.Encode(got)
			if err != nil || !bytes.Equal(again, data) {
				t.Fatalf("Encode(Decode(x)) = %s, %v; want x", again, err)
			}
		})
	}
}

// TestDecodeRejects runs every negative fixture: each must fail with its
// precise error, and all with ErrMalformedEntry.
func TestDecodeRejects(t *testing.T) {
	bad := badEntries(fixture(t, "entry-key-created.json"))
	bad["entry-too-large"] = struct {
		data []byte
		want error
	}{tooLarge(t), audit.ErrEntryTooLarge}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			data := tc.data
			if !strings.HasPrefix(name, "entry-too-large") {
				data = fixture(t, name)
			}
			_, err := audit.Decode(data)
			if !errors.Is(err, tc.want) || !errors.Is(err, audit.ErrMalformedEntry) {
				t.Fatalf("Decode error = %v, want %v", err, tc.want)
			}
		})
	}
}

// tooLarge is a well-formed entry one byte over MaxEntrySize.
func tooLarge(t *testing.T) []byte {
	good := fixture(t, "entry-policy-loaded.json")
	pad := strings.Repeat("a", audit.MaxEntrySize+1-len(good)-len(`,"x":""`))
	data := bytes.Replace(good, []byte(`"policies":3`), []byte(`"policies":3,"x":"`+pad+`"`), 1)
	if len(data) != audit.MaxEntrySize+1 {
		t.Fatalf("built %d bytes", len(data))
	}
	return data
}

func TestNewEntryAndPayload(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	tok := audit.Token{JTI: "j", Sub: "s", Aud: []string{"a"}, Exp: at.Add(time.Minute)}
	for _, p := range []any{tok, &tok} {
		e, err := audit.NewEntry(audit.TokenIssued, at, p)
		if err != nil {
			t.Fatalf("NewEntry(%T): %v", p, err)
		}
		if e.Time.Location() != time.UTC || !e.Time.Equal(at) {
			t.Errorf("Time = %v, want %v in UTC", e.Time, at)
		}
		got, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		if g := got.(*audit.Token); g.JTI != "j" || !g.Exp.Equal(tok.Exp) {
			t.Errorf("Payload = %+v", g)
		}
	}
	for name, tc := range map[string]struct {
		kind audit.Kind
		p    any
	}{
		"wrong payload type": {audit.TokenIssued, audit.Key{}},
		"nil payload":        {audit.TokenIssued, nil},
		"nil pointer":        {audit.TokenIssued, (*audit.Token)(nil)},
		"map payload":        {audit.PolicyLoaded, map[string]any{"version": "v"}},
		"unknown kind":       {audit.Kind("key.lost"), audit.Key{}},
	} {
		if _, err := audit.NewEntry(tc.kind, at, tc.p); !errors.Is(err, audit.ErrMalformedEntry) {
			t.Errorf("%s: NewEntry error = %v, want ErrMalformedEntry", name, err)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	good, err := audit.NewEntry(audit.PolicyLoaded, time.Now(), audit.Policy{Version: "v", Policies: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		edit func(*audit.Entry)
		want error
	}{
		"zero time":        {func(e *audit.Entry) { e.Time = time.Time{} }, audit.ErrMalformedEntry},
		"year 10000":       {func(e *audit.Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, audit.ErrMalformedEntry},
		"unknown kind":     {func(e *audit.Entry) { e.Kind = "policy.deleted" }, audit.ErrUnknownKind},
		"spaced data":      {func(e *audit.Entry) { e.Data = json.RawMessage(`{"version": "v","policies":1}`) }, audit.ErrNonCanonical},
		"reordered data":   {func(e *audit.Entry) { e.Data = json.RawMessage(`{"policies":1,"version":"v"}`) }, audit.ErrNonCanonical},
		"foreign payload":  {func(e *audit.Entry) { e.Data = json.RawMessage(`{"label":"x"}`) }, audit.ErrMalformedEntry},
		"no data":          {func(e *audit.Entry) { e.Data = nil }, audit.ErrMalformedEntry},
		"data with suffix": {func(e *audit.Entry) { e.Data = append(bytes.Clone(e.Data), ' ') }, audit.ErrTrailingData},
	} {
		e := good
		tc.edit(&e)
		if _, err := audit.Encode(e); !errors.Is(err, tc.want) {
			t.Errorf("%s: Encode error = %v, want %v", name, err, tc.want)
		}
	}
}

// TestEvidenceKeptByteForByte checks what the auditor relies on: the
// evidence in an enrollment entry hashes to the digest the server computed
// over the bundle it stored.
func TestEvidenceKeptByteForByte(t *testing.T) {
	bundle, err := json.Marshal(map[string]any{"version": 1, "csr": []byte{1, 2, 3}, "note": "<&>"})
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(bundle)
	data := encode(t, audit.DeviceEnrolled, time.Now(), audit.Enrollment{SPIFFEID: "s", Evidence: bundle})
	e, err := audit.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.Payload()
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256.Sum256(p.(*audit.Enrollment).Evidence); got != want {
		t.Fatal("the evidence bytes changed on the way through the log")
	}
}

func TestEveryKindHasAPayload(t *testing.T) {
	for _, k := range []audit.Kind{audit.DeviceEnrolled, audit.EnrollmentDenied, audit.CertificateIssued, audit.CertificateRenewed,
		audit.CertificateRevoked, audit.DeviceDisabled, audit.DeviceEnabled, audit.PolicyLoaded, audit.KeyCreated, audit.KeyRotated,
		audit.KeyRetired, audit.TokenIssued, audit.TokenExchanged, audit.TokenRevoked} {
		if !k.Known() {
			t.Errorf("%s is not Known", k)
		}
		e := audit.Entry{Kind: k, Time: time.Now(), Data: json.RawMessage(`{}`)}
		if _, err := e.Payload(); err != nil {
			t.Errorf("%s: Payload of {}: %v", k, err)
		}
	}
	if audit.Kind("device.stolen").Known() {
		t.Error("an unknown kind is Known")
	}
}

func TestLeafHash(t *testing.T) {
	data := []byte(`{"kind":"x"}`)
	want := sha256.Sum256(append([]byte{0}, data...))
	if got := audit.LeafHash(data); !reflect.DeepEqual(got, want[:]) {
		t.Fatalf("LeafHash = %x, want SHA-256(0x00 || data) = %x", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "entry-*.json"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := audit.Decode(data)
		if err != nil {
			if !errors.Is(err, audit.ErrMalformedEntry) {
				t.Fatalf("Decode error %v does not match ErrMalformedEntry", err)
			}
			return
		}
		again, err := audit.Encode(e)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical entry: Encode(Decode(%q)) = %q, %v", data, again, err)
		}
		if _, err := e.Payload(); err != nil {
			t.Fatalf("accepted an entry whose payload does not decode: %v", err)
		}
	})
}
