package attest

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// checkerState is the LogChecker's context in an auditor's state file:
// what each device's latest enrollment pinned, by EK hash.
type checkerState struct {
	Devices map[string]enrolledState `json:"devices"`
}

// enrolledState is about 150 bytes of JSON per device.
type enrolledState struct {
	AKHash []byte `json:"ak_sha256"`
	PCRs   []int  `json:"pcrs"`
}

var (
	_ encoding.BinaryMarshaler   = (*LogChecker)(nil)
	_ encoding.BinaryUnmarshaler = (*LogChecker)(nil)
)

// MarshalBinary returns what the checker learned from the entries so far
// (each enrolled device's AK hash and PCR selection), for the auditor's state
// file: an incremental run (audit.VerifyOptions.Context) checks renewals
// of devices enrolled before it against it.
func (c *LogChecker) MarshalBinary() ([]byte, error) {
	s := checkerState{Devices: make(map[string]enrolledState, len(c.devices))}
	for ek, d := range c.devices {
		s.Devices[ek] = enrolledState{AKHash: d.akHash[:], PCRs: d.pcrs}
	}
	return json.Marshal(s)
}

// UnmarshalBinary replaces what the checker knows with data from
// MarshalBinary, and zeroes its counts. It fails on anything else.
func (c *LogChecker) UnmarshalBinary(data []byte) error {
	var s checkerState
	if err := decodeStrictJSON(data, &s); err != nil {
		return fmt.Errorf("attest: log checker state: %w", err)
	}
	devices := make(map[string]enrolled, len(s.Devices))
	for ek, d := range s.Devices {
		if len(d.AKHash) != sha256.Size {
			return fmt.Errorf("attest: log checker state: device %s: AK hash of %d bytes, want %d", ek, len(d.AKHash), sha256.Size)
		}
		devices[ek] = enrolled{akHash: [sha256.Size]byte(d.AKHash), pcrs: d.PCRs}
	}
	c.devices, c.Enrollments, c.Renewals, c.Refusals = devices, 0, 0, 0
	return nil
}

// decodeStrictJSON decodes one JSON value with no unknown field and nothing
// after it.
func decodeStrictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}
