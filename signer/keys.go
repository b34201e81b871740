package signer

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"

	"github.com/sigil-dev/sigil/hsm"
)

// KeySource is where the signing keys live; *hsm.HSM satisfies it.
type KeySource interface {
	List(ctx context.Context) ([]hsm.KeyInfo, error)
	Find(ctx context.Context, ref string) (*hsm.Key, error)
}

// Rotator is the optional power of a KeySource to make the next version of
// a key, used by KeySet.Rotate; *hsm.HSM has it.
type Rotator interface {
	Rotate(ctx context.Context, name string) (*hsm.Key, error)
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

// PublicKey is a published verification key.
type PublicKey struct {
	KID string // RFC 7638 thumbprint
	Alg string // ES256, ES384 or PS256
	Key crypto.PublicKey
}

// KeyState is one key version and its schedule.
type KeyState struct {
	hsm.KeyInfo
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
	state   KeyState
	pub     PublicKey
	signers map[TokenType]jose.Signer
}

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
func (s *KeySet) versions(ctx context.Context) ([]hsm.KeyInfo, error) {
	all, err := s.src.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("signer: list keys: %w", err)
	}
	var infos []hsm.KeyInfo
	for _, info := range all {
		if info.Name == s.name {
			infos = append(infos, info)
		}
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("signer: no version of key %q on the token: generate one", s.name)
	}
	slices.SortFunc(infos, func(a, b hsm.KeyInfo) int { return a.Version - b.Version })
	return infos, nil
}

// load returns the key for info, reusing the one already loaded.
func (s *KeySet) load(ctx context.Context, info hsm.KeyInfo, now time.Time) (*setKey, error) {
	if old := s.snap.Load(); old != nil {
		for _, k := range old.keys {
			if k.state.KID == info.KID {
				return &setKey{state: KeyState{KeyInfo: k.state.KeyInfo, Seen: k.state.Seen}, pub: k.pub, signers: k.signers}, nil
			}
		}
	}
	key, err := s.src.Find(ctx, info.Label)
	if err != nil {
		return nil, fmt.Errorf("signer: load key %s: %w", info.Label, err)
	}
	if key.KID() != info.KID || !slices.Contains(ourAlgs, jose.SignatureAlgorithm(key.Alg())) {
		return nil, fmt.Errorf("signer: key %s changed while loading or has an unsupported algorithm", info.Label)
	}
	seen, err := s.seen.FirstSeen(ctx, info.KID, now)
	if err != nil {
		return nil, fmt.Errorf("signer: record key %s: %w", info.Label, err)
	}
	k, err := newSetKey(key, key.Info(), seen)
	if err == nil {
		s.o.log.InfoContext(ctx, "signer: key loaded", "label", info.Label, "kid", info.KID, "seen", seen)
	}
	return k, err
}

func newSetKey(key crypto.Signer, info hsm.KeyInfo, seen time.Time) (*setKey, error) {
	k := &setKey{
		state:   KeyState{KeyInfo: info, Seen: seen},
		pub:     PublicKey{KID: info.KID, Alg: string(info.Alg), Key: key.Public()},
		signers: map[TokenType]jose.Signer{},
	}
	for _, typ := range []TokenType{AccessToken, TxnToken} {
		opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", info.KID)
		sk := jose.SigningKey{Algorithm: jose.SignatureAlgorithm(info.Alg), Key: cryptosigner.Opaque(key)}
		sig, err := jose.NewSigner(sk, opts)
		if err != nil {
			return nil, fmt.Errorf("signer: key %s: %w", info.Label, err)
		}
		k.signers[typ] = sig
	}
	return k, nil
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
	key, err := r.Rotate(ctx, s.name)
	if err != nil {
		return KeyState{}, fmt.Errorf("signer: rotate %s: %w", s.name, err)
	}
	if err := s.Refresh(ctx); err != nil {
		return KeyState{}, err
	}
	for _, st := range s.Status() {
		if st.KID == key.KID() {
			s.o.log.InfoContext(ctx, "signer: key rotated", "label", st.Label, "kid", st.KID, "active", st.Active)
			return st, nil
		}
	}
	return KeyState{}, fmt.Errorf("signer: rotated key %s not listed", key.Label())
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
