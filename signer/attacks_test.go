package signer_test

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// kit crafts tokens by hand. Tokens from sign are signed by a key the
// verifier trusts, so that each attack token has exactly the one defect it
// is named after.
type kit struct {
	t        testing.TB
	now      time.Time
	trusted  crypto.Signer
	alg, kid string
	attacker crypto.Signer // a key of the same kind as trusted
}

func newKit(t testing.TB, now time.Time, trusted crypto.Signer, alg, kid string) *kit {
	k := &kit{t: t, now: now, trusted: trusted, alg: alg, kid: kid}
	switch alg {
	case "ES256":
		k.attacker = newECKey(t, elliptic.P256())
	case "ES384":
		k.attacker = newECKey(t, elliptic.P384())
	default:
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		k.attacker = rk
	}
	return k
}

// del removes a member in header and claims modifications.
var del = &struct{}{}

func apply(m, mod map[string]any) map[string]any {
	for k, v := range mod {
		if v == del {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func (k *kit) header(mod map[string]any) map[string]any {
	return apply(map[string]any{"alg": k.alg, "kid": k.kid, "typ": "at+jwt"}, mod)
}

// claims are those of a valid token from A to B (the audience checked).
func (k *kit) claims(mod map[string]any) map[string]any {
	return apply(map[string]any{
		"iss": issuer, "sub": "user@example.com", "sigil_sub_iss": idpIssuer, "aud": []string{callerB.ID}, "client_id": callerA.ID,
		"iat": k.now.Add(-time.Minute).Unix(), "nbf": k.now.Add(-time.Minute).Unix(),
		"exp": k.now.Add(10 * time.Minute).Unix(), "jti": "jti-1", "scope": "read write",
		"cnf": map[string]string{"x5t#S256": callerA.Thumbprint}, "act": map[string]any{"sub": callerA.ID},
	}, mod)
}

func (k *kit) craft(hdr, cl map[string]any, sign signFunc) string {
	return craftRaw(mustJSON(k.t, hdr), mustJSON(k.t, cl), sign)
}

// sign crafts a token signed by the trusted key.
func (k *kit) sign(hdrMod, clMod map[string]any) string {
	return k.craft(k.header(hdrMod), k.claims(clMod), jwsSign(k.t, k.trusted, k.alg))
}

func (k *kit) good() string { return k.sign(nil, nil) }

func (k *kit) attackerSign(hdrMod map[string]any) string {
	return k.craft(k.header(hdrMod), k.claims(nil), jwsSign(k.t, k.attacker, k.alg))
}

func (k *kit) publicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.trusted.Public())
	if err != nil {
		k.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func (k *kit) attackerJWK() any {
	return jose.JSONWebKey{Key: k.attacker.Public(), KeyID: k.kid, Algorithm: k.alg}
}

func (k *kit) attackerCert() string {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sigil"},
		NotBefore: k.now.Add(-time.Hour), NotAfter: k.now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.attacker.Public(), k.attacker)
	if err != nil {
		k.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// attack is a subject token and the kind of TokenError it must get
// from the Verifier with audience callerB (ok for accepted).
type attack struct {
	name  string
	token func(k *kit) string
	txn   bool // verify as a transaction token (VerifyTxn)
	code  error
}

// verify checks tok with v as the token endpoint verifies a subject
// token of the attack's type.
func (a attack) verify(ctx context.Context, v *signer.Verifier, tok string) (*token.Claims, error) {
	if a.txn {
		return v.VerifyTxn(ctx, tok, callerB.ID)
	}
	return v.Verify(ctx, tok, callerB.ID)
}

func tokenOnly(s string) func(*kit) string { return func(*kit) string { return s } }

func header(mod map[string]any) func(*kit) string {
	return func(k *kit) string { return k.sign(mod, nil) }
}

func claims(mod map[string]any) func(*kit) string {
	return func(k *kit) string { return k.sign(nil, mod) }
}

// Outcomes of verification: accepted, or a TokenError of a kind.
var (
	ok        error
	malformed = signer.ErrMalformed
	invalid   = signer.ErrInvalid
)

func attacks() []attack {
	return slices.Concat(validTokens(), malformedTokens(), badHeaders(), badClaims())
}

func validTokens() []attack {
	return []attack{
		{name: "valid", token: (*kit).good, code: ok},
		{name: "valid with aud as a string", token: claims(map[string]any{"aud": callerB.ID}), code: ok},
		{name: "valid with typ application/at+jwt", token: header(map[string]any{"typ": "application/at+jwt"}), code: ok},
		{name: "valid with typ in upper case", token: header(map[string]any{"typ": "AT+JWT"}), code: ok},
		{name: "valid expired within leeway", token: func(k *kit) string {
			return k.sign(nil, map[string]any{"exp": k.now.Add(-10 * time.Second).Unix()})
		}, code: ok},
	}
}

func malformedTokens() []attack {
	return []attack{
		{name: "missing subject token", token: tokenOnly(""), code: malformed},
		{name: "garbage", token: tokenOnly("this is not a token"), code: malformed},
		{name: "garbage in three parts", token: tokenOnly("a.b.c"), code: malformed},
		{name: "header not JSON", token: func(k *kit) string {
			return craftRaw([]byte("not json"), mustJSON(k.t, k.claims(nil)), jwsSign(k.t, k.trusted, k.alg))
		}, code: malformed},
		{name: "claims not a JSON object", token: func(k *kit) string {
			return craftRaw(mustJSON(k.t, k.header(nil)), []byte(`["aud"]`), jwsSign(k.t, k.trusted, k.alg))
		}, code: malformed},
		{name: "duplicate header member", token: func(k *kit) string {
			hdr := `{"alg":"` + k.alg + `","kid":"` + k.kid + `","typ":"at+jwt","alg":"none"}`
			return craftRaw([]byte(hdr), mustJSON(k.t, k.claims(nil)), jwsSign(k.t, k.trusted, k.alg))
		}, code: malformed},
		{name: "newline inside", token: func(k *kit) string {
			tok := k.good()
			i := strings.Index(tok, ".") + 5
			return tok[:i] + "\n" + tok[i:]
		}, code: malformed},
		{name: "oversized", token: claims(map[string]any{"pad": strings.Repeat("x", signer.MaxTokenSize)}), code: malformed},
		{name: "four parts", token: func(k *kit) string { return k.good() + ".e30" }, code: malformed},
		{name: "many dots", token: func(k *kit) string { return k.good() + strings.Repeat(".", 40) }, code: malformed},
		{name: "JWE five parts", token: tokenOnly("eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0.a2V5.aXY.Y2lwaGVy.dGFn"), code: malformed},
		{name: "JWS JSON serialization", token: func(k *kit) string {
			p := strings.Split(k.good(), ".")
			return `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`
		}, code: malformed},
	}
}

func badHeaders() []attack {
	return []attack{
		{name: "alg none", token: func(k *kit) string {
			return k.craft(k.header(map[string]any{"alg": "none"}), k.claims(nil), noSignature)
		}, code: invalid},
		{name: "alg None", token: func(k *kit) string {
			return k.craft(k.header(map[string]any{"alg": "None"}), k.claims(nil), noSignature)
		}, code: invalid},
		{name: "HS256 keyed with the public key PEM", token: func(k *kit) string {
			return k.craft(k.header(map[string]any{"alg": "HS256"}), k.claims(nil), hmacSign(k.publicPEM(), "HS256"))
		}, code: invalid},
		{name: "HS256 keyed with the public key DER", token: func(k *kit) string {
			der, _ := x509.MarshalPKIXPublicKey(k.trusted.Public())
			return k.craft(k.header(map[string]any{"alg": "HS256"}), k.claims(nil), hmacSign(der, "HS256"))
		}, code: invalid},
		{name: "alg other than the key's", token: func(k *kit) string {
			other := map[string]string{"ES256": "ES384", "ES384": "ES256", "PS256": "RS256"}[k.alg]
			return k.craft(k.header(map[string]any{"alg": other}), k.claims(nil), jwsSign(k.t, k.trusted, k.alg))
		}, code: invalid},
		{name: "unknown kid", token: func(k *kit) string { return k.attackerSign(map[string]any{"kid": "attacker-key"}) }, code: invalid},
		{name: "missing kid", token: header(map[string]any{"kid": del}), code: invalid},
		{name: "our kid with the attacker's signature", token: func(k *kit) string { return k.attackerSign(nil) }, code: invalid},
		{name: "jwk header with the attacker's key", token: func(k *kit) string {
			return k.attackerSign(map[string]any{"jwk": k.attackerJWK()})
		}, code: invalid},
		{name: "jwk header on a trusted signature", token: func(k *kit) string { return k.sign(map[string]any{"jwk": k.attackerJWK()}, nil) }, code: invalid},
		{name: "jku header", token: header(map[string]any{"jku": "https://attacker.test/jwks.json"}), code: invalid},
		{name: "x5u header", token: header(map[string]any{"x5u": "https://attacker.test/cert.pem"}), code: invalid},
		{name: "x5c header", token: func(k *kit) string { return k.sign(map[string]any{"x5c": []string{k.attackerCert()}}, nil) }, code: invalid},
		{name: "crit header", token: header(map[string]any{"crit": []string{"exp"}}), code: invalid},
		{name: "typ missing", token: header(map[string]any{"typ": del}), code: invalid},
		{name: "typ JWT", token: header(map[string]any{"typ": "JWT"}), code: invalid},
		{name: "typ txntoken+jwt as an access token", token: header(map[string]any{"typ": "txntoken+jwt"}), code: invalid},
		{name: "access token as a txn_token", token: (*kit).good, txn: true, code: invalid},
		{name: "kid not a string", token: header(map[string]any{"kid": 7}), code: invalid},
	}
}

func badClaims() []attack {
	return []attack{
		{name: "expired", token: func(k *kit) string { return k.sign(nil, map[string]any{"exp": k.now.Add(-5 * time.Minute).Unix()}) }, code: invalid},
		{name: "not yet valid", token: func(k *kit) string { return k.sign(nil, map[string]any{"nbf": k.now.Add(5 * time.Minute).Unix()}) }, code: invalid},
		{name: "issued in the future", token: func(k *kit) string { return k.sign(nil, map[string]any{"iat": k.now.Add(5 * time.Minute).Unix()}) }, code: invalid},
		{name: "another audience", token: claims(map[string]any{"aud": []string{callerC.ID}}), code: invalid},
		{name: "missing aud", token: claims(map[string]any{"aud": del}), code: invalid},
		{name: "unknown issuer", token: claims(map[string]any{"iss": "https://attacker.test"}), code: invalid},
		{name: "missing iss", token: claims(map[string]any{"iss": del}), code: invalid},
		{name: "missing exp", token: claims(map[string]any{"exp": del}), code: invalid},
		{name: "missing jti", token: claims(map[string]any{"jti": del}), code: invalid},
		{name: "missing sub", token: claims(map[string]any{"sub": del}), code: invalid},
		{name: "exp as a string", token: func(k *kit) string { return k.sign(nil, map[string]any{"exp": "2099-01-01"}) }, code: invalid},
		{name: "act without sub", token: claims(map[string]any{"act": map[string]any{"act": map[string]any{"sub": callerA.ID}}}), code: invalid},
		{name: "user sub without its issuer", token: claims(map[string]any{"sigil_sub_iss": del}), code: invalid},
		{name: "SPIFFE ID as a user's sub", token: claims(map[string]any{"sub": callerC.ID}), code: invalid},
		{name: "lookalike user sub", token: claims(map[string]any{"sub": " " + callerC.ID}), code: invalid},
		{name: "act naming a user", token: claims(map[string]any{"act": map[string]any{"sub": "bob"}}), code: invalid},
		{name: "act nesting a user", token: claims(map[string]any{"act": map[string]any{"sub": callerA.ID, "act": map[string]any{"sub": "bob"}}}), code: invalid},
		{name: "claims swapped under a signature", token: func(k *kit) string {
			p := strings.Split(k.good(), ".")
			other := b64(mustJSON(k.t, k.claims(map[string]any{"scope": "read write admin"})))
			return p[0] + "." + other + "." + p[2]
		}, code: invalid},
		{name: "signature truncated", token: func(k *kit) string {
			tok := k.good()
			i := strings.LastIndex(tok, ".") + 1
			sig, _ := base64.RawURLEncoding.DecodeString(tok[i:])
			return tok[:i] + b64(sig[:len(sig)-3])
		}, code: invalid},
		{name: "signature empty", token: func(k *kit) string {
			tok := k.good()
			return tok[:strings.LastIndex(tok, ".")+1]
		}, code: invalid},
	}
}

// decodeSegment returns the JSON of part i of a compact JWS.
func decodeSegment(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	return m
}
