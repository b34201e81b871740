package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// srkHandle is go-attestation's storage root key: the parent of AKs and keys.
const srkHandle = 0x81000001

// ActivateCredential proves the AK lives in the same TPM as ek: it decrypts a
// credential a verifier encrypted to ek for this AK's name (go-attestation's
// ActivationParameters.Generate, or go-tpm's tpm2.CreateCredential for other
// EKs), and returns the secret to send back.
//
// ek must be one of EKs. Unlike go-attestation, which always uses the RSA
// EK, this works with each EK EKs returns.
func (a *AK) ActivateCredential(ctx context.Context, ek EK, in attest.EncryptedCredential) ([]byte, error) {
	cred, err := unwrap2B(in.Credential)
	if err != nil {
		return nil, fmt.Errorf("tpm: activate credential: credential: %w", err)
	}
	secret, err := unwrap2B(in.Secret)
	if err != nil {
		return nil, fmt.Errorf("tpm: activate credential: secret: %w", err)
	}
	var out []byte
	err = a.t.do(ctx, "activate credential", func() error {
		if err := a.t.evict(); err != nil {
			return err
		}
		ak, err := a.t.loadRaw(a.blob)
		if err != nil {
			return err
		}
		defer a.t.flush(ak.ObjectHandle)
		ekh, err := a.t.ekHandle(ek)
		if err != nil {
			return err
		}
		defer ekh.close()
		out, err = a.t.activate(ak, ekh, cred, secret)
		return err
	})
	return out, err
}

func (t *TPM) activate(ak *tpm2.LoadResponse, ek *ekHandle, cred, secret []byte) ([]byte, error) {
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: ak.ObjectHandle, Name: ak.Name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ek.auth()},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: cred},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: secret},
	}.Execute(t.tr)
	if err != nil {
		return nil, err
	}
	return rsp.CertInfo.Buffer, nil
}

// ekHandle is a loaded EK: persistent, or derived for this operation.
type ekHandle struct {
	t       *TPM
	handle  tpm2.TPMHandle
	name    tpm2.TPM2BName
	pub     *tpm2.TPMTPublic
	derived bool
}

// ekHandle finds ek in the TPM: at its persistent handle, or derived again
// from the standard template it came from. The TPM's key must be ek.
func (t *TPM) ekHandle(ek EK) (*ekHandle, error) {
	h := &ekHandle{t: t, handle: tpm2.TPMHandle(ek.Handle)}
	var err error
	if ek.Handle == 0 {
		err = h.derive(ek.PublicArea)
	} else if h.pub, err = t.readPublic(h.handle); err == nil && h.pub == nil {
		err = fmt.Errorf("no ek at %#x", ek.Handle)
	}
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(tpm2.Marshal(*h.pub), ek.PublicArea) {
		h.close()
		return nil, errors.New("ek in the tpm differs from the ek given")
	}
	name, err := tpm2.ObjectName(h.pub)
	if err != nil {
		h.close()
		return nil, err
	}
	h.name = *name
	return h, nil
}

// derive creates the EK from each standard template until one yields want.
func (h *ekHandle) derive(want []byte) error {
	for _, slot := range ekSlots {
		if slot.template == nil {
			continue
		}
		handle, pub, err := h.t.createEK(*slot.template)
		if err != nil {
			return fmt.Errorf("derive ek: %w", err)
		}
		if bytes.Equal(tpm2.Marshal(*pub), want) {
			h.handle, h.pub, h.derived = handle, pub, true
			return nil
		}
		if err := h.t.flush(handle); err != nil {
			return err
		}
	}
	return errors.New("no standard template yields the ek given")
}

// auth authorizes use of the EK: its empty auth value if the template allows
// it (swtpm's ECC P-384 EK), else the standard EK policy, PolicySecret with
// the endorsement hierarchy.
func (h *ekHandle) auth() tpm2.Session {
	if h.pub.ObjectAttributes.UserWithAuth {
		return tpm2.PasswordAuth(nil)
	}
	return tpm2.Policy(h.pub.NameAlg, 16, func(tpm transport.TPM, s tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{
			AuthHandle:    tpm2.TPMRHEndorsement,
			PolicySession: s,
			NonceTPM:      nonce,
		}.Execute(tpm)
		return err
	})
}

func (h *ekHandle) close() {
	if h.derived {
		_ = h.t.flush(h.handle)
	}
}

// loadRaw loads an AK or key blob under the SRK with go-tpm, for the commands
// go-attestation does not offer.
func (t *TPM) loadRaw(blob []byte) (*tpm2.LoadResponse, error) {
	raw, err := parseBlob(blob)
	if err != nil {
		return nil, err
	}
	srk, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(srkHandle)}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("read srk: %w", err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srkHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: raw.Blob},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](raw.Public),
	}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return rsp, nil
}

// keyBlob is go-attestation's key encoding (its serializedKey, JSON), which
// AK.Marshal and Key.Marshal return.
type keyBlob struct {
	Encoding          int `json:"KeyEncoding"`
	TPMVersion        uint8
	Public            []byte
	CreateData        []byte
	CreateAttestation []byte
	CreateSignature   []byte
	Blob              []byte `json:"KeyBlob"`
}

// encodingEncrypted is go-attestation's keyEncodingEncrypted: public and
// encrypted private blob.
const encodingEncrypted = 2

func parseBlob(b []byte) (*keyBlob, error) {
	var k keyBlob
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("parse key blob: %w", err)
	}
	if k.TPMVersion != 2 || k.Encoding != encodingEncrypted || len(k.Public) == 0 || len(k.Blob) == 0 {
		return nil, errors.New("parse key blob: not a TPM 2.0 key blob")
	}
	return &k, nil
}

// unwrap2B strips the size prefix of a TPM2B as go-attestation encodes the
// credential and secret.
func unwrap2B(b []byte) ([]byte, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, errors.New("malformed TPM2B")
	}
	return b[2:], nil
}
