package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witnesses (C2SP tlog-witness) cosign checkpoints: a witness that has
// seen a checkpoint of size m cosigns one of size n only with a valid
// consistency proof from m to n, so a log that shows different trees to
// different auditors needs every witness they require to collude. A
// cosigned checkpoint is the log's signed note with the witnesses'
// signature lines (C2SP tlog-cosignature) appended after the log's own.

// WitnessPolicy is what an auditor requires of witnesses (VerifyOptions):
// Witnesses are those it trusts (ParseWitnessKey), and MinWitnesses how
// many of them must have cosigned the latest checkpoint
// (ErrTooFewCosignatures). With it, a log can show this auditor a tree
// other auditors do not see only if that many of the witnesses collude,
// even on a first run without state. A cosignature that claims a witness's
// key and does not verify fails the checkpoint (ErrCheckpointSignature).
type WitnessPolicy struct {
	Witnesses    []note.Verifier
	MinWitnesses int
}

// ErrTooFewCosignatures: the checkpoint is not cosigned by as many of the
// configured witnesses as required (a WitnessError says which are
// missing). Treat it as unwitnessed: wait for the witnesses to catch up
// (sigil_audit_witness_lag_entries on the log's server), never lower the
// requirement to get past it.
var ErrTooFewCosignatures = errors.New("audit: too few witness cosignatures")

// WitnessError is a checkpoint with fewer valid cosignatures than
// required. It matches ErrTooFewCosignatures.
type WitnessError struct {
	Size    uint64   // the checkpoint's size
	Have    []string // witnesses whose cosignature verifies
	Missing []string // configured witnesses with none
	Want    int      // cosignatures required
}

func (e *WitnessError) Error() string {
	return fmt.Sprintf("%v: the checkpoint of size %d is cosigned by %d of the %d witnesses required (missing: %s)",
		ErrTooFewCosignatures, e.Size, len(e.Have), e.Want, strings.Join(e.Missing, ", "))
}

func (e *WitnessError) Unwrap() error { return ErrTooFewCosignatures }

// ParseWitnessKey returns the verifier of a witness's cosignatures from its
// signed-note verifier key, "name+keyid+base64": an Ed25519 key (type
// 0x01, as generate_keys prints it, or 0x04, cosignature/v1) or an ML-DSA-44
// key. Its cosignatures are C2SP tlog-cosignature/v1: they sign the time
// of cosigning with the checkpoint text.
func ParseWitnessKey(vkey string) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("audit: witness key %q: %w", vkey, err)
	}
	return v, nil
}

// Cosigners returns the names of the witnesses in ws whose cosignature on
// the checkpoint note data verifies; data must also carry a valid signature
// by the log key v. A signature that claims the key of one of ws and does
// not verify fails the note (ErrCheckpointSignature): a forged cosignature
// is an attack, not a missing one.
func Cosigners(data []byte, v *Verifier, ws []note.Verifier) ([]string, error) {
	if len(data) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformedCheckpoint, len(data), MaxCheckpointSize)
	}
	n, err := note.Open(data, note.VerifierList(append([]note.Verifier{v}, ws...)...))
	if err != nil {
		var invalid *note.InvalidSignatureError
		if errors.As(err, &invalid) {
			return nil, fmt.Errorf("%w: the signature by %s+%08x does not verify", ErrCheckpointSignature, invalid.Name, invalid.Hash)
		}
		return nil, openError(err, v)
	}
	if !slices.ContainsFunc(n.Sigs, func(s note.Signature) bool { return s.Name == v.Name() && s.Hash == v.KeyHash() }) {
		return nil, fmt.Errorf("%w: no signature by %s", ErrCheckpointSignature, v.ID())
	}
	var names []string
	for _, w := range ws {
		if slices.ContainsFunc(n.Sigs, func(s note.Signature) bool { return s.Name == w.Name() && s.Hash == w.KeyHash() }) {
			names = append(names, w.Name())
		}
	}
	return names, nil
}

// RequireCosignatures checks that the checkpoint note data, signed by the
// log key v, is cosigned by at least min of the witnesses ws; else it
// returns a *WitnessError. It returns the names of those that cosigned.
func RequireCosignatures(data []byte, v *Verifier, ws []note.Verifier, min int) ([]string, error) {
	have, err := Cosigners(data, v, ws)
	if err != nil {
		return nil, err
	}
	if len(have) >= min {
		return have, nil
	}
	cp, err := PeekCheckpoint(data)
	if err != nil {
		return nil, err
	}
	we := &WitnessError{Size: cp.Size, Have: have, Want: min}
	for _, w := range ws {
		if !slices.Contains(have, w.Name()) {
			we.Missing = append(we.Missing, w.Name())
		}
	}
	return have, we
}

// WitnessKey returns the log's verifier key in the form witnesses built on
// transparency-dev/formats (omniwitness, among others) configure a log
// with: "name+keyid+base64(0x02 || SPKI DER)" where keyid is the first four
// bytes of SHA-256 of the SPKI alone (as Sigstore's Rekor computes it), not
// the C2SP key ID String uses. Checkpoints submitted to a witness carry a
// second signature line under that key ID (WitnessNote).
func (v *Verifier) WitnessKey() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.spkiHash(), base64.StdEncoding.EncodeToString(append([]byte{sigTypeECDSA}, v.spki...)))
}

// spkiHash is the Rekor-style key ID: SHA-256(SPKI DER)[:4].
func (v *Verifier) spkiHash() uint32 {
	h := sha256.Sum256(v.spki)
	return binary.BigEndian.Uint32(h[:])
}

// WitnessNote returns the checkpoint note data, signed by the log key v,
// with one more signature line: the same ECDSA signature under the key ID
// of WitnessKey, so that a witness configured with WitnessKey finds it. The
// signature covers the text only, so no second signing is needed.
func WitnessNote(data []byte, v *Verifier) ([]byte, error) {
	if _, err := OpenCheckpoint(data, v); err != nil {
		return nil, err
	}
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		return nil, openError(err, v)
	}
	i := slices.IndexFunc(n.Sigs, func(s note.Signature) bool { return s.Hash == v.KeyHash() })
	raw, err := base64.StdEncoding.DecodeString(n.Sigs[i].Base64)
	if err != nil || len(raw) < 5 {
		return nil, fmt.Errorf("%w: the log signature does not decode", ErrMalformedCheckpoint)
	}
	alt := binary.BigEndian.AppendUint32(nil, v.spkiHash())
	line := fmt.Sprintf("— %s %s\n", v.name, base64.StdEncoding.EncodeToString(append(alt, raw[4:]...)))
	return append(bytes.Clone(data), line...), nil
}

// SignatureLines returns the signature lines of a note (each "— name
// base64\n"), or an error if data is not a note.
func SignatureLines(data []byte) ([]string, error) {
	i := bytes.LastIndex(data, []byte("\n\n"))
	if i < 0 || !bytes.HasSuffix(data, []byte("\n")) {
		return nil, fmt.Errorf("%w: no signature block", ErrMalformedCheckpoint)
	}
	lines := strings.SplitAfter(string(data[i+2:]), "\n")
	return lines[:len(lines)-1], nil
}

// checkWitnesses checks the latest checkpoint's cosignatures.
func (a *auditor) checkWitnesses() error {
	if len(a.opts.Witnesses) == 0 && a.opts.MinWitnesses == 0 {
		return nil
	}
	if a.opts.MinWitnesses > len(a.opts.Witnesses) {
		return fmt.Errorf("audit: verify: %d cosignatures required of %d witnesses", a.opts.MinWitnesses, len(a.opts.Witnesses))
	}
	have, err := RequireCosignatures(a.note, a.v, a.opts.Witnesses, a.opts.MinWitnesses)
	a.rep.Cosigners, a.rep.Witnessed = append([]string{}, have...), a.opts.MinWitnesses
	return err
}
