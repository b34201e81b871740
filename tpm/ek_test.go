package tpm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/sigil-dev/sigil/testenv"
	"github.com/sigil-dev/sigil/tpm"
)

var (
	oidSAN             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

func TestEKs(t *testing.T) {
	t.Parallel()
	sw := sharedTPM(t)
	other := testenv.SWTPM(t) // its own EKs and EK CA
	tt := open(t, sw)
	eks, err := tt.EKs(testCtx(t))
	if err != nil {
		t.Fatalf("EKs: %v", err)
	}
	tests := []struct {
		name   string
		match  func(any) bool
		handle uint32
		index  uint32
	}{
		{"rsa 2048", func(k any) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == 2048 }, 0x81010001, 0x01c00002},
		{"ecc p-384", func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == elliptic.P384() }, 0x81010016, 0x01c00016},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := slices.IndexFunc(eks, func(ek tpm.EK) bool { return tc.match(ek.Public) })
			if i < 0 {
				t.Fatalf("no %s EK among %d EKs", tc.name, len(eks))
			}
			ek := eks[i]
			if ek.Handle != tc.handle || ek.CertIndex != tc.index {
				t.Errorf("handle %#x index %#x, want %#x %#x", ek.Handle, ek.CertIndex, tc.handle, tc.index)
			}
			checkEK(t, ek)
			if err := verifyEKCert(ek.Certificate, sw.EKRoots); err != nil {
				t.Errorf("EK certificate does not verify: %v", err)
			}
			if err := verifyEKCert(ek.Certificate, other.EKRoots); err == nil {
				t.Error("EK certificate verifies against another TPM's EK CA")
			}
			_, err := ek.Certificate.Verify(x509.VerifyOptions{Roots: sw.EKRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if !errors.As(err, new(x509.UnhandledCriticalExtension)) {
				t.Errorf("unmodified swtpm EK certificate: err %v, want x509.UnhandledCriticalExtension", err)
			}
		})
	}
}

// checkEK checks the EK's public key, public area and certificate agree.
func checkEK(t *testing.T, ek tpm.EK) {
	t.Helper()
	if ek.Certificate == nil {
		t.Fatal("no EK certificate")
	}
	eq, ok := ek.Public.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		t.Fatalf("EK key %T has no Equal", ek.Public)
	}
	if !eq.Equal(ek.Certificate.PublicKey) {
		t.Error("EK certificate key differs from the EK")
	}
	area, err := tpm2.Unmarshal[tpm2.TPMTPublic](ek.PublicArea)
	if err != nil {
		t.Fatalf("PublicArea: %v", err)
	}
	pub, err := tpm2.Pub(*area)
	if err != nil || !eq.Equal(pub) {
		t.Errorf("PublicArea key differs from Public: %v", err)
	}
	if a := area.ObjectAttributes; !a.FixedTPM || !a.Restricted || !a.Decrypt || a.SignEncrypt {
		t.Errorf("EK attributes %+v are not a restricted decryption key's", a)
	}
}

// verifyEKCert verifies an EK certificate against roots. swtpm marks its
// subjectAltName critical with only a TPM directory name, which Go does not
// handle: check it is exactly that, then drop it from the unhandled list.
func verifyEKCert(cert *x509.Certificate, roots *x509.CertPool) error {
	c := *cert
	c.UnhandledCriticalExtensions = nil
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			c.UnhandledCriticalExtensions = append(c.UnhandledCriticalExtensions, oid)
			continue
		}
		if err := checkTPMSAN(cert); err != nil {
			return err
		}
	}
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// checkTPMSAN requires the SAN to hold only directory names with the TPM
// manufacturer, model and version attributes.
func checkTPMSAN(cert *x509.Certificate) error {
	i := slices.IndexFunc(cert.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(oidSAN) })
	if i < 0 {
		return errors.New("no SAN extension")
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(cert.Extensions[i].Value, &names); err != nil || len(rest) > 0 || len(names) == 0 {
		return fmt.Errorf("SAN: malformed: %v", err)
	}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 {
			return fmt.Errorf("SAN: general name tag %d, want directoryName", n.Tag)
		}
		var rdns pkix.RDNSequence
		if rest, err := asn1.Unmarshal(n.Bytes, &rdns); err != nil || len(rest) > 0 {
			return fmt.Errorf("SAN: directory name: %v", err)
		}
		seen := 0
		for _, rdn := range rdns {
			for _, atv := range rdn {
				switch {
				case atv.Type.Equal(oidTPMManufacturer), atv.Type.Equal(oidTPMModel), atv.Type.Equal(oidTPMVersion):
					seen++
				default:
					return fmt.Errorf("SAN: unexpected attribute %v", atv.Type)
				}
			}
		}
		if seen != 3 {
			return fmt.Errorf("SAN: %d TPM attributes, want 3", seen)
		}
	}
	return nil
}
