package tpm

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
)

// EK is an endorsement key of the TPM with its certificate, if the TPM has
// one. Public and PublicArea are read from the TPM, not from the certificate:
// a verifier checks that the two match.
type EK struct {
	// Public is the EK's public key (*rsa.PublicKey or *ecdsa.PublicKey).
	Public crypto.PublicKey
	// PublicArea is the EK's TPMT_PUBLIC as the TPM reports it: what a
	// verifier needs to encrypt a credential to any EK (go-tpm's
	// tpm2.CreateCredential); go-attestation's ActivationParameters only
	// handles RSA 2048 and ECC P-256 EKs with the standard templates.
	PublicArea []byte
	// Certificate is the EK certificate from NV, or nil.
	Certificate *x509.Certificate
	// Handle is the EK's persistent handle, or 0 when the TPM derives it
	// from the standard template on demand.
	Handle uint32
	// CertIndex is the NV index the certificate was read from, or 0.
	CertIndex uint32
}

// ekSlot is where the TCG EK Credential Profile and swtpm put one kind of EK.
type ekSlot struct {
	certIndex uint32
	handle    uint32
	template  *tpm2.TPMTPublic // nil: use the persistent key only
	always    bool             // derive from the template even without a certificate
}

var ekSlots = []ekSlot{
	{certIndex: 0x01c00002, handle: 0x81010001, template: &tpm2.RSAEKTemplate, always: true}, // RSA 2048
	{certIndex: 0x01c0000a, handle: 0x81010002, template: &tpm2.ECCEKTemplate},               // ECC P-256
	// ECC P-384 (high range); swtpm_setup persists it at 0x81010016.
	{certIndex: 0x01c00016, handle: 0x81010016},
}

// EKs reads the TPM's endorsement keys: the RSA 2048 EK always (derived from
// the standard template when not persisted), and the ECC P-256 and P-384 EKs
// when the TPM has their certificate or a persistent key. go-attestation's
// own EKs reads only the RSA one.
//
// Templates with a nonce or template in NV (EK Credential Profile 2.3) are not
// supported; such TPMs need their EKs persisted.
func (t *TPM) EKs(ctx context.Context) ([]EK, error) {
	var eks []EK
	err := t.do(ctx, "read eks", func() error {
		if err := t.evict(); err != nil {
			return err
		}
		for _, slot := range ekSlots {
			ek, ok, err := t.readEK(slot)
			if err != nil {
				return err
			}
			if ok {
				eks = append(eks, ek)
			}
		}
		return nil
	})
	return eks, err
}

func (t *TPM) readEK(slot ekSlot) (EK, bool, error) {
	ek := EK{}
	cert, err := t.readEKCert(slot.certIndex)
	if err != nil {
		return ek, false, err
	}
	if cert != nil {
		ek.Certificate, ek.CertIndex = cert, slot.certIndex
	}
	pub, handle, err := t.ekPublic(slot, cert)
	if err != nil || pub == nil {
		return ek, false, err
	}
	if ek.Public, err = tpm2.Pub(*pub); err != nil {
		return ek, false, fmt.Errorf("ek %#x: %w", slot.handle, err)
	}
	ek.PublicArea = tpm2.Marshal(*pub)
	ek.Handle = handle
	return ek, true, nil
}

// ekPublic finds the slot's EK: the persistent key, else the one derived from
// the template, preferring whichever matches the certificate.
func (t *TPM) ekPublic(slot ekSlot, cert *x509.Certificate) (*tpm2.TPMTPublic, uint32, error) {
	persisted, err := t.readPublic(tpm2.TPMHandle(slot.handle))
	if err != nil {
		return nil, 0, err
	}
	if persisted != nil && (cert == nil || matches(persisted, cert)) {
		return persisted, slot.handle, nil
	}
	if slot.template == nil || (cert == nil && !slot.always) {
		return persisted, slot.handle, nil
	}
	derived, err := t.derivePrimary(*slot.template)
	if err != nil {
		return nil, 0, fmt.Errorf("derive ek from template: %w", err)
	}
	if persisted != nil && !matches(derived, cert) {
		return persisted, slot.handle, nil
	}
	return derived, 0, nil
}

func matches(pub *tpm2.TPMTPublic, cert *x509.Certificate) bool {
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return false
	}
	eq, ok := k.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(cert.PublicKey)
}

// readPublic returns the public area at handle, or nil if there is no object.
func (t *TPM) readPublic(h tpm2.TPMHandle) (*tpm2.TPMTPublic, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t.tr)
	if isMissing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read public %#x: %w", uint32(h), err)
	}
	return rsp.OutPublic.Contents()
}

// derivePrimary creates the endorsement primary key for template, reads its
// public area and flushes it.
func (t *TPM) derivePrimary(template tpm2.TPMTPublic) (*tpm2.TPMTPublic, error) {
	h, pub, err := t.createEK(template)
	if err != nil {
		return nil, err
	}
	if err := t.flush(h); err != nil {
		return nil, err
	}
	return pub, nil
}

func (t *TPM) createEK(template tpm2.TPMTPublic) (tpm2.TPMHandle, *tpm2.TPMTPublic, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(template),
	}.Execute(t.tr)
	if err != nil {
		return 0, nil, err
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		_ = t.flush(rsp.ObjectHandle)
		return 0, nil, err
	}
	return rsp.ObjectHandle, pub, nil
}

func (t *TPM) flush(h tpm2.TPMHandle) error {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tr); err != nil {
		return fmt.Errorf("flush %#x: %w", uint32(h), err)
	}
	return nil
}

// readEKCert reads and parses the certificate at an NV index, or returns nil
// if the index is not defined.
func (t *TPM) readEKCert(index uint32) (*x509.Certificate, error) {
	nv, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(t.tr)
	if isMissing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read nv %#x public: %w", index, err)
	}
	pub, err := nv.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("read nv %#x public: %w", index, err)
	}
	raw, err := t.readNV(index, nv.NVName, pub.DataSize)
	if err != nil {
		return nil, err
	}
	cert, err := attest.ParseEKCertificate(raw)
	if err != nil {
		return nil, fmt.Errorf("ek certificate at nv %#x: %w", index, err)
	}
	return cert, nil
}

// nvChunk is below every TPM's TPM2_PT_NV_BUFFER_MAX.
const nvChunk = 512

// readNV reads an NV index with its own (empty) auth value, in chunks.
func (t *TPM) readNV(index uint32, name tpm2.TPM2BName, size uint16) ([]byte, error) {
	out := make([]byte, 0, size)
	for off := uint16(0); off < size; {
		n := min(size-off, nvChunk)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
			Size:       n,
			Offset:     off,
		}.Execute(t.tr)
		if err != nil {
			return nil, fmt.Errorf("read nv %#x: %w", index, err)
		}
		out = append(out, rsp.Data.Buffer...)
		off += n
	}
	return out, nil
}

// isMissing reports a TPM error saying the handle names nothing.
func isMissing(err error) bool {
	return errors.Is(err, tpm2.TPMRCHandle) || errors.Is(err, tpm2.TPMRCValue)
}
