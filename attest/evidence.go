package attest

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"time"
)

// Result is a verified enrollment.
type Result struct {
	Evidence *Evidence
	EK       *EK
	AK       *AK
	Boot     *Boot
	// Key is the certified TPM application key; the certificate is for it.
	Key crypto.PublicKey
	// CSR is signed by Key and asks for it; its signature has been checked.
	CSR *x509.CertificateRequest
}

// Pending is what the server kept between challenge and completion.
type Pending struct {
	Identity      string
	EKCertificate []byte
	EKPublic      []byte
	AK            AKParameters
	Nonce         []byte
	// SecretHash is the SHA-256 of the activation secret.
	SecretHash []byte
}

// Completion is what the TPM answered to a challenge.
type Completion struct {
	// Secret is the activated credential.
	Secret   []byte
	Platform Platform
	Key      CertifiedKey
	// CSR is DER, signed by Key.
	CSR []byte
}

// Complete verifies a completion against what the challenge pinned: the
// activation secret (constant time), then the quotes, event log, key
// certification and CSR, all against the pinned AK and nonce.
func (v *Verifier) Complete(p Pending, req Completion) (*Result, error) {
	got := sha256.Sum256(req.Secret)
	if len(req.Secret) == 0 || subtle.ConstantTimeCompare(got[:], p.SecretHash) != 1 {
		return nil, fail(StepActivation, "activation secret does not match the challenge")
	}
	ev := &Evidence{
		Version: EvidenceVersion, Identity: p.Identity,
		EKCertificate: p.EKCertificate, EKPublic: p.EKPublic, AK: p.AK,
		Nonce: p.Nonce, PCRs: v.PCRs(), Platform: req.Platform, Key: req.Key, CSR: req.CSR,
		VerifiedAt: v.now().UTC(),
	}
	return v.Reverify(ev)
}

// Reverify runs every check that does not need the TPM again on recorded
// evidence: EK trust (at the time of the original verification), AK
// properties, quotes and nonce, PCR coverage, event log replay, key
// certification and the CSR. Credential activation cannot be repeated
// offline; the server's record of it is what an auditor relies on.
func (v *Verifier) Reverify(ev *Evidence) (*Result, error) {
	if err := knownVersion(ev.Version); err != nil {
		return nil, &Error{Step: StepInput, Err: err}
	}
	if len(ev.Nonce) != NonceSize {
		return nil, fail(StepInput, "nonce of %d bytes, want %d", len(ev.Nonce), NonceSize)
	}
	at := v.at(ev.VerifiedAt)
	ek, err := at.VerifyEK(ev.EKCertificate, ev.EKPublic)
	if err != nil {
		return nil, err
	}
	ak, err := at.VerifyAK(ek, ev.AK)
	if err != nil {
		return nil, err
	}
	boot, err := at.verifyPlatform(ak, ev.Nonce, ev.Platform)
	if err != nil {
		return nil, err
	}
	key, csr, err := verifyKey(ak, ev.Nonce, ev.Key, ev.CSR)
	if err != nil {
		return nil, err
	}
	return &Result{Evidence: ev, EK: ek, AK: ak, Boot: boot, Key: key, CSR: csr}, nil
}

// at returns a copy of v whose clock reads t, for verifying EK certificates
// as of the original enrollment.
func (v *Verifier) at(t time.Time) *Verifier {
	c := *v
	c.now = func() time.Time { return t }
	return &c
}
