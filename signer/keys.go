package signer

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sigil-dev/sigil/token"
)

// KeyInfo is the metadata of one version of a signing key, as its
// KeySource lists it. The version's validity window (when it is
// published, signs, retires and leaves JWKS) is the KeySet's, in
// KeyState.
type KeyInfo struct {
	Name    string // the key name, e.g. "jwt"
	Version int    // 1, 2, ...: a higher version succeeds a lower one
	Label   string // the version's name on the source, e.g. "jwt.v2"
	KID     string // RFC 7638 thumbprint of the public key, base64url
	Alg     string // JWS algorithm: ES256, ES384 or PS256
}

// KeySource is where the signing keys live: it lists key versions and
// hands out a crypto.Signer for one. Signing code sees nothing else of
// the key store; internal/hsmkeys adapts the HSM to it.
type KeySource interface {
	// Keys lists every version of every key on the source.
	Keys(ctx context.Context) ([]KeyInfo, error)
	// Signer returns the signer of the version info names. Its public key
	// must be the one info.KID is the thumbprint of, and it should bound
	// each Sign call with a timeout of its own (crypto.Signer takes no
	// context).
	Signer(ctx context.Context, info KeyInfo) (crypto.Signer, error)
}

// Rotator is the optional power of a KeySource to make the next version of
// a key name, used by KeySet.Rotate.
type Rotator interface {
	Rotate(ctx context.Context, name string) (KeyInfo, error)
}

// SeenStore records when each key was first seen. All replicas must share
// one (the token store), so that they agree on when a key is published,
// signs and is withdrawn.
type SeenStore interface {
	// FirstSeen returns the time recorded for kid, first recording now if
	// there is none. Concurrent callers, in any replica, must get the same
	// time for a kid.
	FirstSeen(ctx context.Context, kid string, now time.Time) (time.Time, error)
}

// PublicKey is a published verification key: kid (the RFC 7638
// thumbprint), alg (ES256, ES384 or PS256) and the key.
type PublicKey = token.PublicKey

// KeyState is one key version and its validity window.
type KeyState struct {
	KeyInfo
	Seen      time.Time // first seen (SeenStore): published from then
	Active    time.Time // signs from then
	Retired   time.Time // the next version signs from then; zero for the newest key
	Withdrawn time.Time // leaves JWKS then; zero for the newest key
}

// ourAlgs are the algorithms of our keys, the allow-list for our tokens.
var ourAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.PS256}

// KeySet is the versions of one HSM key name ("jwt.v1", "jwt.v2", ...)
// with their rotation schedule, derived only from the SeenStore times and
// the options, so that replicas agree:
//
//   - a version is published in JWKS from Seen;
//   - the lowest version signs from Seen; every later one from
//     max(Seen+Lead, Active of the previous version);
//   - a version is Retired when the next one becomes Active, and Withdrawn
//     from JWKS at Retired+Retain+Leeway, when every token it signed has
//     expired.
//
// Refresh (or Run) picks up new versions; every replica must refresh more
// often than Lead. A KeySet not refreshed within Lead refuses to sign,
// since a newer version may have become active meanwhile.
type KeySet struct {
	src  KeySource
	seen SeenStore
	name string
	o    *options
	mu   sync.Mutex // serialises Refresh
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	keys      []*setKey // by version
	refreshed time.Time
}

type setKey struct {
	state  KeyState
	pub    PublicKey
	signer *jwsSigner
}

// signedTypes are the typ headers a KeySet signs: access and transaction
// tokens (Minter) and the revocation feed's events (KeySet.Sign).
var signedTypes = []token.Type{token.AccessToken, token.TxnToken, token.EventToken}

// NewKeySet returns the key set for the key name on src, recording first
// sightings in seen. Options: WithLead, WithRetain, WithLeeway, WithClock,
// WithLogger. Call Refresh before use.
func NewKeySet(src KeySource, name string, seen SeenStore, opts ...Option) (*KeySet, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if src == nil || seen == nil || name == "" {
		return nil, errors.New("signer: NewKeySet needs a key source, a key name and a SeenStore")
	}
	return &KeySet{src: src, seen: seen, name: name, o: o}, nil
}

// Refresh lists the versions of the key, loads new ones and records their
// first sighting. On error the previous state stays in use.
func (s *KeySet) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.clock()
	infos, err := s.versions(ctx)
	if err != nil {
		return err
	}
	keys := make([]*setKey, 0, len(infos))
	for _, info := range infos {
		k, err := s.load(ctx, info, now)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	s.schedule(keys)
	s.snap.Store(&snapshot{keys: keys, refreshed: now})
	return nil
}

// versions lists the versions of the key name, oldest first.
func (s *KeySet) versions(ctx context.Context) ([]KeyInfo, error) {
	all, err := s.src.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("signer: list keys: %w", err)
	}
	var infos []KeyInfo
	for _, info := range all {
		if info.Name == s.name {
			infos = append(infos, info)
		}
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("signer: no version of key %q on the token: generate one", s.name)
	}
	slices.SortFunc(infos, func(a, b KeyInfo) int { return a.Version - b.Version })
	return infos, nil
}

// load returns the key for info, reusing the one already loaded.
func (s *KeySet) load(ctx context.Context, info KeyInfo, now time.Time) (*setKey, error) {
	if old := s.snap.Load(); old != nil {
		for _, k := range old.keys {
			if k.state.KID == info.KID {
				return &setKey{state: KeyState{KeyInfo: k.state.KeyInfo, Seen: k.state.Seen}, pub: k.pub, signer: k.signer}, nil
			}
		}
	}
	if !slices.Contains(ourAlgs, jose.SignatureAlgorithm(info.Alg)) {
		return nil, fmt.Errorf("signer: key %s has the unsupported algorithm %q", info.Label, info.Alg)
	}
	key, err := s.src.Signer(ctx, info)
	if err != nil {
		return nil, fmt.Errorf("signer: load key %s: %w", info.Label, err)
	}
	if kid, err := thumbprint(key.Public()); err != nil || kid != info.KID || !token.Fits(info.Alg, key.Public()) {
		return nil, fmt.Errorf("signer: key %s changed while loading or does not fit its algorithm", info.Label)
	}
	seen, err := s.seen.FirstSeen(ctx, info.KID, now)
	if err != nil {
		return nil, fmt.Errorf("signer: record key %s: %w", info.Label, err)
	}
	k, err := newSetKey(key, info, seen)
	if err == nil {
		s.o.log.InfoContext(ctx, "signer: key loaded", "label", info.Label, "kid", info.KID, "seen", seen)
	}
	return k, err
}

// thumbprint is the RFC 7638 JWK thumbprint of pub, base64url: a kid.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

func newSetKey(key crypto.Signer, info KeyInfo, seen time.Time) (*setKey, error) {
	sig, err := newJWSSigner(key, info, signedTypes)
	if err != nil {
		return nil, err
	}
	return &setKey{
		state:  KeyState{KeyInfo: info, Seen: seen},
		pub:    PublicKey{KID: info.KID, Alg: info.Alg, Key: key.Public()},
		signer: sig,
	}, nil
}

// schedule sets Active, Retired and Withdrawn from the Seen times.
func (s *KeySet) schedule(keys []*setKey) {
	for i, k := range keys {
		k.state.Active = k.state.Seen
		if i > 0 {
			k.state.Active = later(k.state.Seen.Add(s.o.lead), keys[i-1].state.Active)
			prev := &keys[i-1].state
			prev.Retired = k.state.Active
			prev.Withdrawn = k.state.Active.Add(s.o.retain + s.o.leeway)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Run refreshes every interval until ctx ends, logging failures; it
// returns ctx's error. interval must be positive and, if Lead is, below it.
func (s *KeySet) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 || (s.o.lead > 0 && interval >= s.o.lead) {
		return fmt.Errorf("signer: refresh interval %v must be positive and below the lead time %v", interval, s.o.lead)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := s.Refresh(ctx); err != nil {
				s.o.log.ErrorContext(ctx, "signer: key refresh failed", "key", s.name, "err", err)
			}
		}
	}
}

// Rotate makes the next version of the key on the token and refreshes: the
// new version is published now and signs from now+Lead. The source must
// implement Rotator.
func (s *KeySet) Rotate(ctx context.Context) (KeyState, error) {
	r, ok := s.src.(Rotator)
	if !ok {
		return KeyState{}, errors.New("signer: the key source cannot rotate keys")
	}
	info, err := r.Rotate(ctx, s.name)
	if err != nil {
		return KeyState{}, fmt.Errorf("signer: rotate %s: %w", s.name, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return KeyState{}, err
	}
	for _, st := range s.Status() {
		if st.KID == info.KID {
			s.o.log.InfoContext(ctx, "signer: key rotated", "label", st.Label, "kid", st.KID, "active", st.Active)
			return st, nil
		}
	}
	return KeyState{}, fmt.Errorf("signer: rotated key %s not listed", info.Label)
}

// Status returns every loaded version and its schedule, oldest first,
// including withdrawn ones still on the token.
func (s *KeySet) Status() []KeyState {
	snap := s.snap.Load()
	if snap == nil {
		return nil
	}
	out := make([]KeyState, len(snap.keys))
	for i, k := range snap.keys {
		out[i] = k.state
	}
	return out
}

func (k *setKey) published(now time.Time) bool {
	return k.state.Withdrawn.IsZero() || now.Before(k.state.Withdrawn)
}

// Lookup returns the published key with this kid.
func (s *KeySet) Lookup(kid string) (PublicKey, bool) {
	snap := s.snap.Load()
	if snap == nil {
		return PublicKey{}, false
	}
	now := s.o.clock()
	for _, k := range snap.keys {
		if k.state.KID == kid && k.published(now) {
			return k.pub, true
		}
	}
	return PublicKey{}, false
}

// JWKS returns the published public keys as an RFC 7517 JWK Set, each with
// kid, alg and use "sig".
func (s *KeySet) JWKS() ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	if snap := s.snap.Load(); snap != nil {
		now := s.o.clock()
		for _, k := range snap.keys {
			if k.published(now) {
				set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub.Key, KeyID: k.pub.KID, Algorithm: k.pub.Alg, Use: "sig"})
			}
		}
	}
	return json.Marshal(set)
}

// ErrStale means the KeySet has not been refreshed within the lead time:
// refresh it (Run does) before signing again.
var ErrStale = errors.New("signer: key set not refreshed within the lead time")

// signing returns the version that signs at now.
func (s *KeySet) signing(now time.Time) (*setKey, error) {
	snap := s.snap.Load()
	switch {
	case snap == nil:
		return nil, errors.New("signer: key set not loaded: call Refresh")
	case s.o.lead > 0 && now.Sub(snap.refreshed) > s.o.lead:
		return nil, ErrStale
	}
	var cur *setKey
	for _, k := range snap.keys {
		if !k.state.Active.After(now) {
			cur = k
		}
	}
	if cur == nil {
		return nil, errors.New("signer: no key version is active yet")
	}
	return cur, nil
}

// Sign signs claims (any JSON-encodable value) as a compact JWS with typ
// and the kid of the version that signs now, the choice Minter makes, and
// returns it with that kid. A stale key set (ErrStale) does not sign.
// typ is one of the types the key set signs: access, transaction or
// event tokens. Minter signs tokens; Sign is for other signed statements
// under the same keys, such as the revocation feed's events.
func (s *KeySet) Sign(ctx context.Context, typ token.Type, claims any) (jws, kid string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", fmt.Errorf("signer: sign %s: %w", typ, err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", "", fmt.Errorf("signer: sign %s: encode claims: %w", typ, err)
	}
	return s.sign(s.o.clock(), typ, payload)
}

// sign signs payload with the version that signs at now.
func (s *KeySet) sign(now time.Time, typ token.Type, payload []byte) (jws, kid string, err error) {
	key, err := s.signing(now)
	if err != nil {
		return "", "", err
	}
	jws, err = key.signer.sign(typ, payload)
	if err != nil {
		return "", "", fmt.Errorf("signer: sign %s with %s: %w", typ, key.state.Label, err)
	}
	return jws, key.pub.KID, nil
}

// MemorySeen is a SeenStore in memory, for a single process and tests.
type MemorySeen struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// FirstSeen implements SeenStore.
func (m *MemorySeen) FirstSeen(_ context.Context, kid string, now time.Time) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.seen[kid]; ok {
		return t, nil
	}
	if m.seen == nil {
		m.seen = map[string]time.Time{}
	}
	m.seen[kid] = now
	return now, nil
}

var _ SeenStore = (*MemorySeen)(nil)
