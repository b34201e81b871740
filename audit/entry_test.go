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

// TestEncodeNewIsEncode: EncodeNew gives Encode's bytes for every golden
// entry and for payloads with what encoding/json escapes or replaces, and
// refuses what Encode or NewEntry refuse.
func TestEncodeNewIsEncode(t *testing.T) {
	t.Parallel()
	check := func(name string, k audit.Kind, at time.Time, p any) {
		t.Helper()
		e, err := audit.NewEntry(k, at, p)
		if err != nil {
			t.Fatalf("%s: NewEntry: %v", name, err)
		}
		want, err := audit.Encode(e)
		if err != nil {
			t.Fatalf("%s: Encode: %v", name, err)
		}
		got, err := audit.EncodeNew(k, at, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: EncodeNew = %q, %v; want Encode's %q", name, got, err, want)
		}
		if _, err := audit.Decode(got); err != nil {
			t.Fatalf("%s: Decode(EncodeNew) = %v", name, err)
		}
	}
	for name, e := range goldenEntries() {
		p, err := e.Payload()
		if err != nil {
			t.Fatal(err)
		}
		check(name, e.Kind, e.Time, p)
	}
	odd := "<&> \u2028\u2029 \"\\ \x00 \ufffd \\ufffd tab\t"
	evidence, err := json.Marshal(map[string]any{"note": odd, "csr": []byte{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	zoned := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.FixedZone("", -7*3600))
	check("escaped strings", audit.CertificateRenewed, zoned, &audit.Certificate{
		Serial: odd, SPIFFEID: "spiffe://sigil.test/" + odd, NotAfter: zoned, Evidence: evidence, PolicyIDs: []string{odd, ""},
	})
	check("whole seconds", audit.TokenIssued, time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), audit.Token{JTI: "j", Aud: []string{}})

	at := time.Now()
	for name, tc := range map[string]struct {
		kind audit.Kind
		at   time.Time
		p    any
	}{
		"zero time":          {audit.PolicyLoaded, time.Time{}, audit.Policy{Version: "v"}},
		"year 10000":         {audit.PolicyLoaded, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), audit.Policy{Version: "v"}},
		"unknown kind":       {audit.Kind("policy.deleted"), at, audit.Policy{Version: "v"}},
		"wrong payload type": {audit.TokenIssued, at, audit.Key{}},
		"map payload":        {audit.PolicyLoaded, at, map[string]any{"version": "v"}},
		"invalid evidence":   {audit.DeviceEnrolled, at, audit.Enrollment{Evidence: json.RawMessage(`{"a":`)}},
		"not UTF-8":          {audit.DeviceDisabled, at, audit.Device{EKHash: "ek\xff"}},
		"too large":          {audit.DeviceEnrolled, at, audit.Enrollment{Evidence: json.RawMessage(`"` + strings.Repeat("a", audit.MaxEntrySize) + `"`)}},
	} {
		if got, err := audit.EncodeNew(tc.kind, tc.at, tc.p); !errors.Is(err, audit.ErrMalformedEntry) {
			t.Errorf("%s: EncodeNew = %q, %v; want ErrMalformedEntry", name, got, err)
		}
	}
}

// FuzzEncodeNew: for any strings, times and evidence, EncodeNew gives
// Encode's bytes, or fails where NewEntry or Encode fail.
func FuzzEncodeNew(f *testing.F) {
	f.Add("1f", "spiffe://sigil.test/workload/a", int64(1748779200123456789), int32(0), []byte(`{"version":1}`))
	f.Add("<&>\u2028", "\xff", int64(0), int32(-3600), []byte(`"x"`))
	f.Fuzz(func(t *testing.T, serial, id string, nanos int64, offset int32, evidence []byte) {
		at := time.Unix(0, nanos).In(time.FixedZone("", int(offset%(24*3600))))
		if !json.Valid(evidence) {
			evidence = nil
		}
		p := audit.Certificate{Serial: serial, SPIFFEID: id, NotAfter: at, Evidence: evidence, PolicyIDs: []string{id}}
		got, err := audit.EncodeNew(audit.CertificateRenewed, at, p)
		var want []byte
		e, werr := audit.NewEntry(audit.CertificateRenewed, at, p)
		if werr == nil {
			want, werr = audit.Encode(e)
		}
		if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("EncodeNew = %q, %v; Encode(NewEntry) = %q, %v", got, err, want, werr)
		}
	})
}
