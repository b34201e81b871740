// Command demoidp is the demo's user identity provider: it signs user
// access tokens (RFC 9068, ES256) that sigil accepts as subject tokens from
// a configured external issuer, so a user's request can start a delegation
// chain. For tests and demos only: its key is a file.
//
//	demoidp init DIR                                  key and JWKS under DIR
//	demoidp token DIR -sub alice -aud AUD -scope "a b" a user token on stdout
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer is the demo IdP's "iss".
const Issuer = "https://idp.sigil.test"

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "init":
		err = initIdP(os.Args[2])
	case "token":
		err = token(os.Args[2], os.Args[3:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demoidp:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demoidp init DIR | demoidp token DIR -sub SUB -aud AUD [-scope S] [-ttl D]")
	os.Exit(2)
}

// initIdP makes the signing key and publishes its JWKS, once.
func initIdP(dir string) error {
	keyPath := filepath.Join(dir, "idp-key.pem")
	if _, err := os.Stat(keyPath); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: "ES256", Use: "sig"}
	kid, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return err
	}
	jwk.KeyID = fmt.Sprintf("%x", kid[:8])
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "idp-jwks.json"), jwks, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// token signs a user access token.
func token(dir string, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "the user")
	aud := fs.String("aud", "", "the audience: the workload the user calls")
	scope := fs.String("scope", "", "space-separated scopes")
	ttl := fs.Duration("ttl", 15*time.Minute, "lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" || *aud == "" {
		return errors.New("-sub and -aud are required")
	}
	key, kid, err := loadKey(dir)
	if err != nil {
		return err
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		return err
	}
	now := time.Now()
	claims := map[string]any{
		"iss": Issuer, "sub": *sub, "aud": []string{*aud}, "scope": *scope, "client_id": "demo-frontend-login",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(*ttl).Unix(), "jti": randomID(),
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func loadKey(dir string) (*ecdsa.PrivateKey, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "idp-key.pem"))
	if err != nil {
		return nil, "", err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", errors.New("idp-key.pem holds no PEM block")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, "", err
	}
	var set jose.JSONWebKeySet
	raw, err := os.ReadFile(filepath.Join(dir, "idp-jwks.json"))
	if err == nil {
		err = json.Unmarshal(raw, &set)
	}
	if err != nil || len(set.Keys) != 1 {
		return nil, "", fmt.Errorf("idp-jwks.json: %v", err)
	}
	return key, set.Keys[0].KeyID, nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}
