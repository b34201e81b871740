// Package ca issues X.509-SVIDs for attested TPM keys.
//
// The root and issuing CA keys live wherever the caller's crypto.Signer puts
// them (in sigild: the HSM); this package never sees key material. Leaf
// certificates are signed through smallstep's soft CAS
// (github.com/smallstep/certificates/cas/softcas) from templates built with
// go.step.sm/crypto/x509util.
//
// The certificate profile:
//
//   - exactly one URI SAN, the SPIFFE ID, inside the CA's trust domain (the
//     issuing CA carries a URI name constraint for it as well);
//   - key usage digitalSignature only; extended key usage clientAuth, plus
//     serverAuth when asked for;
//   - a short lifetime (default 1 h, capped by MaxTTL);
//   - a non-critical extension (OIDEvidence) that names the attestation
//     evidence digest, the EK hash and the policy set version, so any relying
//     party can find the audit entry that justified the certificate.
package ca
