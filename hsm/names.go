package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Alg is the JOSE signature algorithm a key is made for; a key signs with
// that algorithm only.
type Alg string

// Supported algorithms.
const (
	ES256 Alg = "ES256" // ECDSA P-256 with SHA-256
	ES384 Alg = "ES384" // ECDSA P-384 with SHA-384
	PS256 Alg = "PS256" // RSASSA-PSS, RSA 3072, SHA-256, MGF1-SHA-256, 32-byte salt
)

// rsaBits is the size of RSA keys made by Generate.
const rsaBits = 3072

// hash returns the digest a key of this algorithm signs, or 0 if unsupported.
func (a Alg) hash() crypto.Hash {
	switch a {
	case ES256, PS256:
		return crypto.SHA256
	case ES384:
		return crypto.SHA384
	}
	return 0
}

// algOf names the algorithm for a public key found on the token. RSA keys
// below 2048 bits and other curves are not used.
func algOf(pub crypto.PublicKey) (Alg, bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ES256, true
		case elliptic.P384():
			return ES384, true
		}
	case *rsa.PublicKey:
		return PS256, k.N.BitLen() >= 2048
	}
	return "", false
}

// thumbprint is the RFC 7638 JWK SHA-256 thumbprint, base64url without
// padding: the key id (kid) published in JWKS and logged.
func thumbprint(pub crypto.PublicKey) (string, error) {
	t, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// Key labels. A key is a name plus a version, stored as the CKA_LABEL
// "<name>.v<version>": "jwt.v1", "jwt.v2", ... Names are 1-48 characters of
// a-z, 0-9, "-" and "_", starting with a letter or digit, so the ".v"
// separator is unambiguous. Versions are decimal, from 1, without leading
// zeros, so every version has exactly one label. Keys whose labels do not
// follow the scheme are left alone (not listed, not found).
const (
	maxNameLen = 48
	maxVersion = 999999
)

func keyLabel(name string, version int) string {
	return name + ".v" + strconv.Itoa(version)
}

// parseLabel splits a CKA_LABEL into name and version.
func parseLabel(label string) (name string, version int, ok bool) {
	i := strings.LastIndex(label, ".v")
	if i < 0 || validKeyName(label[:i]) != nil {
		return "", 0, false
	}
	v, err := parseVersion(label[i+2:])
	return label[:i], v, err == nil
}

func parseVersion(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > maxVersion || strconv.Itoa(v) != s {
		return 0, fmt.Errorf("version %q: want 1 to %d without leading zeros", s, maxVersion)
	}
	return v, nil
}

// parseRef reads "name" (latest version, returned as 0) or "name.vN".
func parseRef(ref string) (name string, version int, err error) {
	if i := strings.LastIndex(ref, ".v"); i >= 0 {
		if version, err = parseVersion(ref[i+2:]); err != nil {
			return "", 0, err
		}
		ref = ref[:i]
	}
	return ref, version, validKeyName(ref)
}

func validKeyName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("key name must be 1 to %d characters", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i], i == 0) {
			return fmt.Errorf("key name %q: use a-z, 0-9, \"-\" and \"_\", starting with a letter or digit", name)
		}
	}
	return nil
}

func nameChar(c byte, first bool) bool {
	ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
	return ok || !first && (c == '-' || c == '_')
}
