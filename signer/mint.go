package signer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sigil-dev/sigil/token"
)

// Minted is a token a Minter signed: the compact JWS, its claims as
// signed, and the kid of the key version that signed it.
type Minted struct {
	Token  string
	Claims *token.Claims
	KID    string
}

// Minter signs tokens of one issuer with the signing version of a KeySet.
type Minter struct {
	issuer string
	keys   *KeySet
	o      *options
}

// NewMinter returns a Minter for issuer (the iss of every token, an https
// URL) signing with keys. Options: WithClock, WithLogger.
func NewMinter(issuer string, keys *KeySet, opts ...Option) (*Minter, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if issuer == "" || keys == nil {
		return nil, errors.New("signer: NewMinter needs an issuer and a KeySet")
	}
	return &Minter{issuer: issuer, keys: keys, o: o}, nil
}

// AccessToken signs c as an RFC 9068 access token (typ at+jwt) and returns
// it with the claims as signed and the kid that signed it. Minter sets
// Type, Issuer and a fresh ID; IssuedAt defaults to now and NotBefore to
// IssuedAt. Subject, Audience and Expiry are required; subject and actors
// must be identities a token of sigil names (token.Claims.CheckIdentities:
// the subject a workload or an external issuer's user, every actor a
// workload); the lifetime (Expiry - IssuedAt) may not exceed the KeySet's
// Retain, Expiry must be in the future, and the token may not exceed
// MaxTokenSize. The transaction token claims (Txn, RequestingWorkload,
// TxnContext, RequestContext) are dropped. ctx is checked before signing; the HSM call
// itself is bounded by the hsm handle's WithTimeout.
func (m *Minter) AccessToken(ctx context.Context, c token.Claims) (*Minted, error) {
	c.Txn, c.RequestingWorkload, c.TxnContext, c.RequestContext = "", "", nil, nil
	return m.mint(ctx, token.AccessToken, c)
}

// TxnToken signs c as a transaction token (typ txntoken+jwt), with the
// same rules as AccessToken; besides, RequestingWorkload (req_wl) and a
// scope are required, and the lifetime may not exceed MaxTxnLifetime. A
// missing Txn gets a fresh random id.
func (m *Minter) TxnToken(ctx context.Context, c token.Claims) (*Minted, error) {
	if c.RequestingWorkload == "" || len(c.Scope) == 0 {
		return nil, errors.New("signer: mint: a transaction token needs req_wl and scope")
	}
	if c.Txn == "" {
		c.Txn = NewID()
	}
	return m.mint(ctx, token.TxnToken, c)
}

func (m *Minter) mint(ctx context.Context, typ token.Type, c token.Claims) (*Minted, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("signer: mint: %w", err)
	}
	now := m.o.clock()
	m.fill(typ, &c, now)
	if err := m.check(&c, now); err != nil {
		return nil, err
	}
	// The claims' own encoder: json.Marshal(c) would call it and then scan
	// its output once more to check and compact it (token's
	// TestClaimsMarshalJSONIsCompact: the bytes are the same).
	payload, err := c.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signer: mint: encode claims: %w", err)
	}
	tok, kid, err := m.keys.sign(now, typ, payload)
	if err != nil {
		return nil, err
	}
	if len(tok) > MaxTokenSize {
		return nil, fmt.Errorf("signer: mint: token of %d bytes exceeds MaxTokenSize: fewer audiences, scopes or context", len(tok))
	}
	if m.o.log.Enabled(ctx, slog.LevelDebug) { // its arguments would be allocated, logged or not
		m.o.log.LogAttrs(ctx, slog.LevelDebug, "signer: token minted", slog.String("typ", string(typ)), slog.String("jti", c.ID),
			slog.String("kid", kid), slog.String("sub", c.Subject), slog.Time("exp", c.Expiry))
	}
	return &Minted{Token: tok, Claims: &c, KID: kid}, nil
}

func (m *Minter) fill(typ token.Type, c *token.Claims, now time.Time) {
	c.Type, c.Issuer, c.ID = typ, m.issuer, NewID()
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = c.IssuedAt
	}
	c.IssuedAt = c.IssuedAt.UTC().Truncate(time.Second)
	c.NotBefore = c.NotBefore.UTC().Truncate(time.Second)
	c.Expiry = c.Expiry.UTC().Truncate(time.Second)
}

func (m *Minter) check(c *token.Claims, now time.Time) error {
	life := c.Expiry.Sub(c.IssuedAt)
	switch {
	case c.Subject == "" || len(c.Audience) == 0:
		return errors.New("signer: mint: subject and audience are required")
	case !c.Expiry.After(now) || life <= 0:
		return errors.New("signer: mint: expiry must be in the future and after issued-at")
	case life > m.keys.o.retain:
		return fmt.Errorf("signer: mint: lifetime %v exceeds the key retention %v", life, m.keys.o.retain)
	case c.Type == token.TxnToken && life > MaxTxnLifetime:
		return fmt.Errorf("signer: mint: a transaction token lives at most %v, not %v", MaxTxnLifetime, life)
	}
	if err := c.CheckIdentities(); err != nil {
		return fmt.Errorf("signer: mint: %w", err)
	}
	return nil
}

// NewID returns a new jti or txn: 18 bytes, base64url (24 characters), a
// 48-bit big-endian Unix time in milliseconds, then 96 random bits.
// Minter gives every token one; the token service gives one to reference
// tokens. The random bits make it unguessable and unique; the time makes
// the IDs made within a few seconds share a prefix, so that a store's
// inserts of them into the indexes keyed by jti land on a few B-tree
// pages instead of one random page each. It tells no more than the
// token's iat. Nothing parses it: a jti is an opaque string.
func NewID() string {
	var b [18]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// referenceLen is the length of a reference token: 32 bytes, base64url.
const referenceLen = 43

// NewReference returns a new opaque reference token (256 random bits,
// base64url, 43 characters, no dots) and its digest. Hand the handle to the
// client once; store only the digest.
func NewReference() (handle, digest string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	handle = base64.RawURLEncoding.EncodeToString(b)
	return handle, digestOf(handle)
}

// ReferenceDigest returns the digest of a presented reference token, the
// key to look its record up by: base64url(SHA-256(handle)). It fails if
// handle does not have the shape NewReference gives (introspection then
// answers active:false).
func ReferenceDigest(handle string) (string, error) {
	if len(handle) != referenceLen || !isBase64URL(handle, false) {
		return "", errors.New("signer: not a reference token")
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(handle); err != nil {
		return "", errors.New("signer: not a reference token")
	}
	return digestOf(handle), nil
}

func digestOf(handle string) string {
	sum := sha256.Sum256([]byte(handle))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
