package attest

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"slices"
)

// acceptTPMSAN handles the critical subject alternative name that TCG EK
// certificates carry: a directoryName holding the TPM manufacturer, model and
// version. Go's x509 parses SANs but cannot represent a directoryName, so it
// reports the extension as unhandled and Verify fails. The extension is
// marked handled only after checking it holds directoryNames of TCG
// attributes and nothing else; any other unhandled critical extension stays
// and fails verification.
func acceptTPMSAN(cert *x509.Certificate) error {
	i := slices.IndexFunc(cert.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSubjectAltName) })
	if i < 0 {
		return nil
	}
	if _, err := tpmSAN(cert); err != nil {
		return err
	}
	cert.UnhandledCriticalExtensions = slices.Delete(slices.Clone(cert.UnhandledCriticalExtensions), i, i+1)
	return nil
}

// tpmSAN parses the SAN of cert as TCG TPM attributes.
func tpmSAN(cert *x509.Certificate) (map[string]string, error) {
	var raw []byte
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			raw = ext.Value
		}
	}
	var names []asn1.RawValue
	if rest, err := asn1.Unmarshal(raw, &names); err != nil || len(rest) != 0 {
		return nil, errors.New("critical subject alternative name does not parse")
	}
	attrs := map[string]string{}
	for _, n := range names {
		// directoryName is [4] EXPLICIT Name.
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 {
			return nil, errors.New("critical subject alternative name holds more than TPM attributes")
		}
		if err := tpmAttributes(n.Bytes, attrs); err != nil {
			return nil, err
		}
	}
	return attrs, nil
}

func tpmAttributes(der []byte, into map[string]string) error {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) != 0 {
		return errors.New("TPM directoryName does not parse")
	}
	for _, rdn := range rdns {
		for _, atv := range rdn {
			s, ok := atv.Value.(string)
			known := atv.Type.Equal(oidTPMManufacturer) || atv.Type.Equal(oidTPMModel) || atv.Type.Equal(oidTPMVersion)
			if !ok || !known {
				return errors.New("TPM directoryName holds an attribute that is not a TCG TPM attribute")
			}
			into[atv.Type.String()] = s
		}
	}
	return nil
}

// tpmInfo returns the TPM manufacturer, model and version from cert's SAN.
func tpmInfo(cert *x509.Certificate) (manufacturer, model, version string) {
	attrs, err := tpmSAN(cert)
	if err != nil {
		return "", "", ""
	}
	return attrs[oidTPMManufacturer.String()], attrs[oidTPMModel.String()], attrs[oidTPMVersion.String()]
}
