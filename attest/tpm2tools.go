package attest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/sigil-dev/sigil/audit"
)

// ToolsQuote is one recorded quote in the file formats of tpm2-tools, so
// that an auditor checks it with tools no one at sigil wrote:
//
//	tpm2_checkquote -u ak.pub -m quote.msg -s quote.sig -f pcrs.bin -g sha256 -q $(cat nonce.hex)
//
// It is built from a record (Evidence.ToolsQuote, Renewal.ToolsQuote), not
// verified: tpm2_checkquote, or Reverify and VerifyRenewal, do that.
type ToolsQuote struct {
	// AKPublic is the AK's TPM2B_PUBLIC: the recorded TPMT_PUBLIC with its
	// two-byte size (ak.pub, as tpm2_createak -u writes it).
	AKPublic []byte
	// Message is the quote's TPMS_ATTEST, as recorded (quote.msg).
	Message []byte
	// Signature is the AK's TPMT_SIGNATURE over it, as recorded (quote.sig).
	Signature []byte
	// PCRs are the quoted PCR values in tpm2-tools' serialised form
	// (pcrs.bin, the bytes tpm2_quote -o writes), see serializePCRs.
	PCRs []byte
	// Nonce is the challenge nonce the quote's extraData must hold.
	Nonce []byte
	// EventLog is the measured-boot event log (eventlog.bin).
	EventLog []byte
}

// The files ToolsQuote.Write writes.
const (
	ToolsAKPublic  = "ak.pub"
	ToolsMessage   = "quote.msg"
	ToolsSignature = "quote.sig"
	ToolsPCRs      = "pcrs.bin"
	ToolsNonce     = "nonce.hex"
	ToolsEventLog  = "eventlog.bin"
)

// ToolsQuote returns the enrollment's SHA-256 quote in tpm2-tools' formats.
func (e *Evidence) ToolsQuote() (*ToolsQuote, error) {
	return toolsQuote(e.AK.Public, e.Nonce, e.Platform)
}

// ToolsQuote returns the renewal's SHA-256 quote in tpm2-tools' formats.
func (r *Renewal) ToolsQuote() (*ToolsQuote, error) {
	return toolsQuote(r.AKPublic, r.Nonce, r.Platform)
}

// toolsQuote picks the quote over the SHA-256 bank and the recorded
// values of the PCRs it selects.
func toolsQuote(akPublic, nonce []byte, p Platform) (*ToolsQuote, error) {
	if len(akPublic) == 0 || len(akPublic) > 0xffff {
		return nil, fmt.Errorf("attest: tpm2-tools quote: AK public of %d bytes", len(akPublic))
	}
	q, sel, err := sha256Quote(p.Quotes)
	if err != nil {
		return nil, err
	}
	values, err := quotedValues(sel, p.PCRs)
	if err != nil {
		return nil, err
	}
	pcrs, err := serializePCRs(sel, values)
	if err != nil {
		return nil, err
	}
	ak := binary.BigEndian.AppendUint16(nil, uint16(len(akPublic)))
	return &ToolsQuote{
		AKPublic: append(ak, akPublic...), Message: q.Quote, Signature: q.Signature,
		PCRs: pcrs, Nonce: nonce, EventLog: p.EventLog,
	}, nil
}

// sha256Quote finds the quote whose PCR selection is of the SHA-256 bank.
func sha256Quote(quotes []Quote) (Quote, tpm2.PCRSelection, error) {
	for _, q := range quotes {
		att, err := tpm2.DecodeAttestationData(q.Quote)
		if err != nil {
			return Quote{}, tpm2.PCRSelection{}, fmt.Errorf("attest: tpm2-tools quote: decode TPMS_ATTEST: %w", err)
		}
		if att.Type != tpm2.TagAttestQuote || att.AttestedQuoteInfo == nil {
			return Quote{}, tpm2.PCRSelection{}, errors.New("attest: tpm2-tools quote: a recorded quote is not a TPM2_Quote")
		}
		if sel := att.AttestedQuoteInfo.PCRSelection; sel.Hash == tpm2.AlgSHA256 {
			return q, sel, nil
		}
	}
	return Quote{}, tpm2.PCRSelection{}, errors.New("attest: tpm2-tools quote: no quote over the SHA-256 PCR bank")
}

// quotedValues returns the recorded SHA-256 values of the selected PCRs,
// in index order (the order TPM2_Quote hashes them).
func quotedValues(sel tpm2.PCRSelection, pcrs []PCR) ([][]byte, error) {
	byIndex := map[int][]byte{}
	for _, p := range pcrs {
		if p.Alg == "sha256" {
			byIndex[p.Index] = p.Digest
		}
	}
	idx := slices.Clone(sel.PCRs)
	slices.Sort(idx)
	out := make([][]byte, 0, len(idx))
	for _, i := range idx {
		d, ok := byIndex[i]
		if !ok || len(d) != 32 {
			return nil, fmt.Errorf("attest: tpm2-tools quote: no recorded SHA-256 value of quoted PCR %d", i)
		}
		out = append(out, d)
	}
	return out, nil
}

// Sizes of tpm2-tools' serialised PCR file: the C structures of the TSS
// (tss2_tpm2_types.h) as they lie in memory on a little-endian machine,
// padding included, which is what tpm2_quote -o and tpm2_pcrread -o write
// and tpm2_checkquote -f reads (tpm2-tools lib/pcr.c,
// pcr_fwrite_serialized):
//
//	TPML_PCR_SELECTION  UINT32 count; TPMS_PCR_SELECTION[16]
//	TPMS_PCR_SELECTION  UINT16 hash; UINT8 sizeofSelect; BYTE pcrSelect[4]; 1 byte padding
//	UINT32              the number of TPML_DIGEST that follow
//	TPML_DIGEST         UINT32 count; TPM2B_DIGEST[8]
//	TPM2B_DIGEST        UINT16 size; BYTE buffer[64]
//
// The values are in selection order, at most 8 per TPML_DIGEST, as
// TPM2_PCR_Read returns them.
const (
	pcrSelectMax      = 4  // TPM2_PCR_SELECT_MAX
	numPCRBanks       = 16 // TPM2_NUM_PCR_BANKS
	pcrSelectionSize  = 8  // sizeof(TPMS_PCR_SELECTION)
	digestsPerList    = 8  // TPML_DIGEST holds at most 8
	digestBufferSize  = 64 // sizeof(TPMU_HA)
	digestSize        = 2 + digestBufferSize
	pcrSelectionsSize = 4 + numPCRBanks*pcrSelectionSize
	digestListSize    = 4 + digestsPerList*digestSize
	sizeofSelect      = 3 // 24 PCRs, as every PC TPM has
)

// serializePCRs writes values, one per selected PCR in index order, in
// tpm2-tools' serialised form.
func serializePCRs(sel tpm2.PCRSelection, values [][]byte) ([]byte, error) {
	var buf bytes.Buffer
	head := make([]byte, pcrSelectionsSize)
	binary.LittleEndian.PutUint32(head, 1)
	binary.LittleEndian.PutUint16(head[4:], uint16(sel.Hash))
	head[6] = sizeofSelect
	for _, i := range sel.PCRs {
		if i < 0 || i >= 8*sizeofSelect {
			return nil, fmt.Errorf("attest: tpm2-tools quote: PCR %d out of range", i)
		}
		head[7+i/8] |= 1 << (i % 8)
	}
	buf.Write(head)
	lists := (len(values) + digestsPerList - 1) / digestsPerList
	buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(lists)))
	for l := range lists {
		list := make([]byte, digestListSize)
		chunk := values[l*digestsPerList : min(len(values), (l+1)*digestsPerList)]
		binary.LittleEndian.PutUint32(list, uint32(len(chunk)))
		for k, d := range chunk {
			off := 4 + k*digestSize
			binary.LittleEndian.PutUint16(list[off:], uint16(len(d)))
			copy(list[off+2:], d)
		}
		buf.Write(list)
	}
	return buf.Bytes(), nil
}

// Write writes the quote's files into dir, which it creates (mode 0755)
// if needed; existing files of the same names are replaced. nonce.hex
// holds the nonce in lower-case hex, as tpm2_checkquote -q takes it.
func (q *ToolsQuote) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("attest: tpm2-tools quote: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{ToolsAKPublic, q.AKPublic}, {ToolsMessage, q.Message}, {ToolsSignature, q.Signature},
		{ToolsPCRs, q.PCRs}, {ToolsNonce, []byte(hex.EncodeToString(q.Nonce) + "\n")}, {ToolsEventLog, q.EventLog},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("attest: tpm2-tools quote: %w", err)
		}
	}
	return nil
}

// ErrNoQuote means an audit entry carries no quote: it is neither a
// device.enrolled nor a certificate.renewed entry with evidence.
var ErrNoQuote = errors.New("entry carries no quote")

// EntryQuote returns the quote of a device.enrolled or certificate.renewed
// audit entry in tpm2-tools' formats, with the serial of the certificate
// issued on it, after checking that the evidence hashes to the digest the
// entry names. Entries of other kinds are ErrNoQuote.
func EntryQuote(e audit.Entry) (serial string, q *ToolsQuote, err error) {
	if e.Kind != audit.DeviceEnrolled && e.Kind != audit.CertificateRenewed {
		return "", nil, ErrNoQuote
	}
	p, err := e.Payload()
	if err != nil {
		return "", nil, fmt.Errorf("attest: %s entry: %w", e.Kind, err)
	}
	if enr, ok := p.(*audit.Enrollment); ok {
		q, err = enrollmentQuote(enr)
		return enr.Serial, q, err
	}
	c := p.(*audit.Certificate)
	q, err = renewalQuote(c)
	return c.Serial, q, err
}

func enrollmentQuote(p *audit.Enrollment) (*ToolsQuote, error) {
	ev, err := ParseEvidence(p.Evidence)
	if err != nil {
		return nil, err
	}
	if err := digestMatches(ev, p.EvidenceDigest); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return ev.ToolsQuote()
}

func renewalQuote(p *audit.Certificate) (*ToolsQuote, error) {
	r, err := ParseRenewal(p.Evidence)
	if err != nil {
		return nil, err
	}
	if err := digestMatches(r, p.EvidenceDigest); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	return r.ToolsQuote()
}
