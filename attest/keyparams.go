package attest

import (
	"errors"
	"fmt"

	"github.com/google/go-tpm/legacy/tpm2"
)

// Minimum key strengths for AKs and application keys.
const minRSABits = 2048

var strongCurves = map[tpm2.EllipticCurve]bool{
	tpm2.CurveNISTP256: true,
	tpm2.CurveNISTP384: true,
	tpm2.CurveNISTP521: true,
}

// signOnly checks a key's public area: a signing key that cannot decrypt,
// bound to its TPM and parent, generated inside the TPM, of an acceptable
// strength, and restricted exactly when restricted says so.
func signOnly(pub tpm2.Public, restricted bool) error {
	attrs := pub.Attributes
	switch {
	case attrs&tpm2.FlagSign == 0:
		return errors.New("key is not a signing key")
	case attrs&tpm2.FlagDecrypt != 0:
		return errors.New("key can decrypt: want sign-only")
	case attrs&tpm2.FlagFixedTPM == 0:
		return errors.New("key is not fixedTPM")
	case attrs&tpm2.FlagFixedParent == 0:
		return errors.New("key is not fixedParent")
	case attrs&tpm2.FlagSensitiveDataOrigin == 0:
		return errors.New("key was not generated inside the TPM (sensitiveDataOrigin)")
	case (attrs&tpm2.FlagRestricted != 0) != restricted:
		return fmt.Errorf("key restricted=%v, want %v", attrs&tpm2.FlagRestricted != 0, restricted)
	}
	return strength(pub)
}

func strength(pub tpm2.Public) error {
	switch pub.Type {
	case tpm2.AlgRSA:
		if pub.RSAParameters == nil || pub.RSAParameters.KeyBits < minRSABits {
			return fmt.Errorf("RSA key below %d bits", minRSABits)
		}
	case tpm2.AlgECC:
		if pub.ECCParameters == nil || !strongCurves[pub.ECCParameters.CurveID] {
			return errors.New("ECC key not on P-256, P-384 or P-521")
		}
	default:
		return fmt.Errorf("key algorithm 0x%x not supported", pub.Type)
	}
	return nil
}
