package attest

import (
	"strings"
	"testing"

	"github.com/google/go-tpm/legacy/tpm2"
)

// Each attribute an AK or an application key must have, removed (or an
// attribute it must not have, added), is refused with a message naming it.
func TestSignOnly(t *testing.T) {
	ak := tpm2.FlagSign | tpm2.FlagRestricted | tpm2.FlagFixedTPM | tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin
	ecc := func(attrs tpm2.KeyProp, curve tpm2.EllipticCurve) tpm2.Public {
		return tpm2.Public{Type: tpm2.AlgECC, Attributes: attrs, ECCParameters: &tpm2.ECCParams{CurveID: curve}}
	}
	rsa := func(bits uint16) tpm2.Public {
		return tpm2.Public{Type: tpm2.AlgRSA, Attributes: ak, RSAParameters: &tpm2.RSAParams{KeyBits: bits}}
	}
	tests := []struct {
		name       string
		pub        tpm2.Public
		restricted bool
		want       string
	}{
		{"ak-p256", ecc(ak, tpm2.CurveNISTP256), true, ""},
		{"ak-rsa-2048", rsa(2048), true, ""},
		{"app-key-p256", ecc(ak&^tpm2.FlagRestricted, tpm2.CurveNISTP256), false, ""},
		{"not-signing", ecc(ak&^tpm2.FlagSign, tpm2.CurveNISTP256), true, "not a signing key"},
		{"can-decrypt", ecc(ak|tpm2.FlagDecrypt, tpm2.CurveNISTP256), true, "can decrypt"},
		{"exportable", ecc(ak&^tpm2.FlagFixedTPM, tpm2.CurveNISTP256), true, "not fixedTPM"},
		{"duplicable", ecc(ak&^tpm2.FlagFixedParent, tpm2.CurveNISTP256), true, "not fixedParent"},
		{"imported", ecc(ak&^tpm2.FlagSensitiveDataOrigin, tpm2.CurveNISTP256), true, "sensitiveDataOrigin"},
		{"ak-unrestricted", ecc(ak&^tpm2.FlagRestricted, tpm2.CurveNISTP256), true, "restricted=false, want true"},
		{"app-key-restricted", ecc(ak, tpm2.CurveNISTP256), false, "restricted=true, want false"},
		{"weak-curve", ecc(ak, tpm2.CurveBNP256), true, "not on P-256, P-384 or P-521"},
		{"rsa-1024", rsa(1024), true, "below 2048 bits"},
		{"symmetric", tpm2.Public{Type: tpm2.AlgSymCipher, Attributes: ak}, true, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := signOnly(tt.pub, tt.restricted)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("signOnly: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("signOnly = %v, want %q", err, tt.want)
			}
		})
	}
}
