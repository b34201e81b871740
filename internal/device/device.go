// Package device holds what sigil's services know about a device and share:
// the store's key for a certificate issued to it, and the facts policy
// decides on, derived from verified attestation evidence. The enrollment
// service (internal/enroll) establishes them and the token service
// (internal/tokens) re-derives them; neither imports the other. SetStatus
// disables or enables a device, revoking and logging as it goes.
package device

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// Serial is the store's key for a certificate: its serial number in hex.
func Serial(cert *x509.Certificate) string {
	return cert.SerialNumber.Text(16)
}

// Facts are the policy facts of a verified enrollment: its EK (hash and
// certificate issuer), its AK and the boot the quote proved.
func Facts(res *attest.Result) policy.DeviceFacts {
	return facts(res.EK.Hash, res.EK.Issuer, res.AK.Hash, res.Boot)
}

// RenewalFacts are the policy facts of a verified renewal of a certificate
// of dev: the device's EK (and its certificate's issuer) from the device
// record, the AK that quoted (the renewal's pinned AK) and the boot the
// quote proved.
func RenewalFacts(dev store.Device, r *attest.Renewal, boot *attest.Boot) (policy.DeviceFacts, error) {
	var issuer string
	if len(dev.EKCertDER) > 0 {
		ek, err := x509.ParseCertificate(dev.EKCertDER)
		if err != nil {
			return policy.DeviceFacts{}, fmt.Errorf("device: EK certificate of %s: %w", dev.EKHash, err)
		}
		issuer = ek.Issuer.String()
	}
	ak := sha256.Sum256(r.AKPublic)
	return facts(dev.EKHash, issuer, hex.EncodeToString(ak[:]), boot), nil
}

// facts builds policy facts from verified hex digests and boot facts.
func facts(ekHash, ekIssuer, akHash string, boot *attest.Boot) policy.DeviceFacts {
	ek, _ := hex.DecodeString(ekHash)
	ak, _ := hex.DecodeString(akHash)
	f := policy.DeviceFacts{EKHash: ek, EKIssuer: ekIssuer, AKHash: ak, SecureBoot: boot.SecureBoot, PCRs: boot.PCRs}
	for _, d := range boot.EventDigests {
		b, _ := hex.DecodeString(d)
		f.EventDigests = append(f.EventDigests, b)
	}
	return f
}
