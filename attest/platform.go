package attest

import (
	"bytes"
	"crypto"
	"encoding/hex"

	"github.com/google/go-attestation/attest"
)

// Limits on the boot state a client may send.
const (
	maxQuotes   = 4
	maxPCRs     = 3 * 24
	maxEventLog = 512 << 10
)

// Boot is what a verified quote and event log say about the boot.
type Boot struct {
	// PCRs are the quoted SHA-256 PCR values.
	PCRs map[int][]byte
	// EventDigests are the hex SHA-256 digests of the events that replayed
	// to the quoted PCRs, in log order.
	EventDigests []string
	// SecureBoot is true when the verified events show UEFI Secure Boot on.
	SecureBoot bool
}

// verifyPlatform checks that the quotes are signed by ak over nonce, cover
// every required PCR, and that the event log replays to them.
func (v *Verifier) verifyPlatform(ak *AK, nonce []byte, p Platform) (*Boot, error) {
	akPub, err := attest.ParseAKPublic(ak.params.Public)
	if err != nil {
		return nil, fail(StepQuote, "AK public: %v", err)
	}
	return v.verifyQuotes(akPub, nonce, p)
}

// verifyQuotes is verifyPlatform with the AK's public area parsed.
func (v *Verifier) verifyQuotes(akPub *attest.AKPublic, nonce []byte, p Platform) (*Boot, error) {
	if len(p.Quotes) == 0 || len(p.Quotes) > maxQuotes {
		return nil, fail(StepQuote, "want 1 to %d quotes, got %d", maxQuotes, len(p.Quotes))
	}
	pcrs, err := convertPCRs(p.PCRs)
	if err != nil {
		return nil, err
	}
	quotes := make([]attest.Quote, len(p.Quotes))
	for i, q := range p.Quotes {
		quotes[i] = attest.Quote{Quote: q.Quote, Signature: q.Signature}
	}
	if err := akPub.VerifyAll(quotes, pcrs, nonce); err != nil {
		return nil, fail(StepQuote, "%v", err)
	}
	boot := &Boot{PCRs: map[int][]byte{}}
	var quoted []attest.PCR
	for _, pcr := range pcrs {
		if pcr.DigestAlg == crypto.SHA256 && pcr.QuoteVerified() {
			boot.PCRs[pcr.Index] = pcr.Digest
			quoted = append(quoted, pcr)
		}
	}
	for _, want := range v.pcrs {
		if _, ok := boot.PCRs[want]; !ok {
			return nil, fail(StepQuote, "quote does not cover SHA-256 PCR %d, which policy requires", want)
		}
	}
	if err := replay(p.EventLog, quoted, boot, v.secureBoot); err != nil {
		return nil, err
	}
	return boot, nil
}

// replay checks the event log against the quoted PCRs and records the
// digests of the events that replayed, and what they say of Secure Boot
// (through sb, which may be nil).
func replay(log []byte, quoted []attest.PCR, boot *Boot, sb *secureBootCache) error {
	if len(log) == 0 || len(log) > maxEventLog {
		return fail(StepEventLog, "event log missing or larger than %d bytes", maxEventLog)
	}
	el, err := attest.ParseEventLog(log)
	if err != nil {
		return fail(StepEventLog, "parse: %v", err)
	}
	events, err := el.Verify(quoted)
	if err != nil {
		return fail(StepEventLog, "does not replay to the quoted PCRs: %v", err)
	}
	measured := map[int]bool{}
	for _, e := range events {
		measured[e.Index] = true
		boot.EventDigests = append(boot.EventDigests, hex.EncodeToString(e.Digest))
	}
	// go-attestation accepts a PCR without events whatever its value: a log
	// with every event of a PCR removed would replay. A PCR the log does not
	// explain must still hold its reset value.
	for _, pcr := range quoted {
		if !measured[pcr.Index] && !bytes.Equal(pcr.Digest, resetValue(pcr.Index, len(pcr.Digest))) {
			return fail(StepEventLog, "PCR %d was extended but the event log has no events for it", pcr.Index)
		}
	}
	boot.SecureBoot = sb.enabled(events)
	return nil
}

// resetValue is a PCR's value after TPM2_Startup(CLEAR): all ones for the
// DRTM PCRs 17-22, zeros otherwise.
func resetValue(index, size int) []byte {
	b := make([]byte, size)
	if index >= 17 && index <= 22 {
		for i := range b {
			b[i] = 0xff
		}
	}
	return b
}

func convertPCRs(in []PCR) ([]attest.PCR, error) {
	if len(in) == 0 || len(in) > maxPCRs {
		return nil, fail(StepQuote, "want 1 to %d PCR values, got %d", maxPCRs, len(in))
	}
	seen := map[[2]int]bool{}
	out := make([]attest.PCR, 0, len(in))
	for _, p := range in {
		h, err := pcrHash(p)
		if err != nil {
			return nil, err
		}
		key := [2]int{p.Index, int(h)}
		if seen[key] {
			return nil, fail(StepQuote, "PCR %d (%s) given twice", p.Index, p.Alg)
		}
		seen[key] = true
		out = append(out, attest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: h})
	}
	return out, nil
}

func pcrHash(p PCR) (crypto.Hash, error) {
	var h crypto.Hash
	switch p.Alg {
	case "sha1":
		h = crypto.SHA1
	case "sha256":
		h = crypto.SHA256
	default:
		return 0, fail(StepQuote, "PCR %d: unsupported bank %q", p.Index, p.Alg)
	}
	if p.Index < 0 || p.Index > 23 || len(p.Digest) != h.Size() {
		return 0, fail(StepQuote, "PCR %d (%s): bad index or digest size", p.Index, p.Alg)
	}
	return h, nil
}
