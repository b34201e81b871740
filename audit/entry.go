package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"
)

// Kind says what an entry records.
type Kind string

// The kinds of entries, and their payload types.
const (
	DeviceEnrolled     Kind = "device.enrolled"     // Enrollment
	EnrollmentDenied   Kind = "enrollment.denied"   // Denial
	CertificateIssued  Kind = "certificate.issued"  // Certificate
	CertificateRenewed Kind = "certificate.renewed" // Certificate, with renewal evidence
	CertificateRevoked Kind = "certificate.revoked" // Certificate, with a reason
	DeviceDisabled     Kind = "device.disabled"     // Device
	DeviceEnabled      Kind = "device.enabled"      // Device
	DeviceAKReplaced   Kind = "device.ak_replaced"  // AKReplacement
	PolicyLoaded       Kind = "policy.loaded"       // Policy
	KeyCreated         Kind = "key.created"         // Key
	KeyRotated         Kind = "key.rotated"         // Key
	KeyRetired         Kind = "key.retired"         // Key
	TokenIssued        Kind = "token.issued"        // Token
	TokenExchanged     Kind = "token.exchanged"     // Token
	TokenRevoked       Kind = "token.revoked"       // Token
	// RestoreAcknowledged: an operator acknowledged that the database is
	// older than what sigild had signed (restored from a copy); the log
	// goes on from the restored entries, so checkpoints of the sizes
	// after the restore point are signed twice, once in each lineage.
	RestoreAcknowledged Kind = "restore.acknowledged" // Restore
	// ShardStarted is the first entry of every shard of a log sharded by
	// time (ShardLink): it names the shard and commits to the previous
	// shard's final checkpoint.
	ShardStarted Kind = "log.shard" // ShardLink
)

// MaxEntrySize bounds an encoded entry. Enrollments carry the evidence
// bundle, event log included, which is the largest thing logged.
const MaxEntrySize = 4 << 20

// Entry is one log entry. Data is the JSON of the kind's payload type,
// exactly as json.Marshal writes it (see NewEntry).
type Entry struct {
	Kind Kind
	Time time.Time
	Data json.RawMessage
}

// wireEntry is the JSON form of an Entry; field order is the encoding's.
type wireEntry struct {
	Kind Kind            `json:"kind"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// NewEntry returns an entry of kind k at t with payload p, which must be a
// value of (or pointer to) the kind's payload type.
func NewEntry(k Kind, t time.Time, p any) (Entry, error) {
	want, ok := payloads[k]
	if !ok {
		return Entry{}, malformed(ErrUnknownKind, "%q", k)
	}
	if got := reflect.Indirect(reflect.ValueOf(p)); !got.IsValid() || got.Type() != want {
		return Entry{}, malformed(nil, "%s wants an audit.%s payload, got %T", k, want.Name(), p)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return Entry{}, malformed(nil, "encode %s payload: %v", k, err)
	}
	return Entry{Kind: k, Time: t.UTC(), Data: data}, nil
}

// Payload decodes the entry's data into a new value of its kind's payload
// type and returns a pointer to it: *Enrollment, *Certificate, ...
func (e Entry) Payload() (any, error) {
	want, ok := payloads[e.Kind]
	if !ok {
		return nil, malformed(ErrUnknownKind, "%q", e.Kind)
	}
	p := reflect.New(want).Interface()
	if err := strictJSON(e.Data, p); err != nil {
		if errors.Is(err, ErrTrailingData) {
			return nil, malformed(ErrTrailingData, "%s payload", e.Kind)
		}
		return nil, malformed(nil, "%s payload: %v", e.Kind, err)
	}
	return p, nil
}

// Encode returns the canonical encoding of e: the compact JSON object
// {"kind":…,"time":…,"data":…} with the time in UTC (RFC 3339, nanoseconds
// when there are any) and data as json.Marshal writes the payload. The same
// entry always encodes to the same bytes, and Decode accepts exactly what
// Encode returns. Encode refuses an entry Decode would refuse.
func Encode(e Entry) (data []byte, err error) {
	if e.Time.IsZero() {
		return nil, malformed(nil, "no time")
	}
	if err := checkData(e); err != nil {
		return nil, err
	}
	data, err = json.Marshal(wireEntry{Kind: e.Kind, Time: e.Time.UTC(), Data: e.Data})
	if err != nil {
		return nil, malformed(nil, "encode: %v", err)
	}
	if len(data) > MaxEntrySize {
		return nil, malformed(ErrEntryTooLarge, "%d bytes, at most %d", len(data), MaxEntrySize)
	}
	return data, nil
}

// EncodeNew is Encode(NewEntry(k, t, p)) without Encode's round trip
// through the payload: NewEntry's data is json.Marshal of a value of the
// kind's own payload type, which is the canonical encoding by definition,
// so decoding and re-encoding it (which Encode must do for an Entry of
// unknown origin) would only read a large payload, an enrollment's or
// renewal's evidence, twice more. The exceptions, a string that was not
// UTF-8 and a time not in UTC, go through Encode, which checks them. The entry is assembled in the field order
// json.Marshal gives wireEntry, with the same escaping; TestEncodeNewIsEncode
// and FuzzEncodeNew hold it to Encode's bytes and Decode's acceptance.
func EncodeNew(k Kind, t time.Time, p any) ([]byte, error) {
	e, err := NewEntry(k, t, p)
	if err != nil {
		return nil, err
	}
	if e.Time.IsZero() {
		return nil, malformed(nil, "no time")
	}
	if bytes.Contains(e.Data, []byte(`\ufffd`)) || !timesInUTC(p) {
		// json.Marshal wrote invalid UTF-8 as this escape, which decodes
		// to U+FFFD and re-encodes unescaped; a time in a zone whose
		// offset has seconds is written rounded to the minute: neither
		// survives the round trip, and Encode says so.
		return Encode(e)
	}
	kind, err := json.Marshal(e.Kind)
	if err != nil {
		return nil, malformed(nil, "encode: %v", err)
	}
	at, err := json.Marshal(e.Time)
	if err != nil {
		return nil, malformed(nil, "encode: %v", err)
	}
	n := len(`{"kind":,"time":,"data":}`) + len(kind) + len(at) + len(e.Data)
	if n > MaxEntrySize {
		return nil, malformed(ErrEntryTooLarge, "%d bytes, at most %d", n, MaxEntrySize)
	}
	data := make([]byte, 0, n)
	data = append(data, `{"kind":`...)
	data = append(data, kind...)
	data = append(data, `,"time":`...)
	data = append(data, at...)
	data = append(data, `,"data":`...)
	data = append(data, e.Data...)
	return append(data, '}'), nil
}

// timesInUTC reports whether every time.Time field of the payload p (a
// flat struct, or a pointer to one, as all payload types are) is in UTC.
func timesInUTC(p any) bool {
	v := reflect.Indirect(reflect.ValueOf(p))
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanInterface() {
			continue
		}
		if t, ok := f.Interface().(time.Time); ok && t.Location() != time.UTC {
			return false
		}
	}
	return true
}

// checkData checks that e.Data is the canonical JSON of e.Kind's payload.
func checkData(e Entry) error {
	p, err := e.Payload()
	if err != nil {
		return err
	}
	canon, err := json.Marshal(p)
	if err != nil {
		return malformed(nil, "%s payload: %v", e.Kind, err)
	}
	if !bytes.Equal(canon, e.Data) {
		return malformed(ErrNonCanonical, "%s payload", e.Kind)
	}
	return nil
}

// Decode parses an encoded entry strictly: at most MaxEntrySize bytes, one
// JSON object with exactly the fields kind, time and data, a known kind, a
// payload of the kind's type without unknown fields, nothing after the
// object, and the canonical encoding. Errors wrap ErrMalformedEntry.
func Decode(data []byte) (Entry, error) {
	if len(data) > MaxEntrySize {
		return Entry{}, malformed(ErrEntryTooLarge, "%d bytes, at most %d", len(data), MaxEntrySize)
	}
	var w wireEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Entry{}, malformed(nil, "%v", err)
	}
	if off := dec.InputOffset(); off != int64(len(data)) {
		return Entry{}, malformed(ErrTrailingData, "%d bytes after the entry", int64(len(data))-off)
	}
	if !w.Kind.Known() {
		return Entry{}, malformed(ErrUnknownKind, "%q", w.Kind)
	}
	e := Entry{Kind: w.Kind, Time: w.Time, Data: w.Data}
	canon, err := Encode(e)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(canon, data) {
		return Entry{}, malformed(ErrNonCanonical, "entry")
	}
	return e, nil
}

// LeafHash returns the RFC 6962 leaf hash of an encoded entry:
// SHA-256(0x00 || data).
func LeafHash(data []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(data) }

// strictJSON decodes exactly one JSON value into v, refusing unknown fields
// and trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.InputOffset() != int64(len(data)) {
		return fmt.Errorf("%w after the value", ErrTrailingData)
	}
	return nil
}
