package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/signer"
)

// Keys is the HSM, the store and the token key set, opened as sigild opens
// them, for the operator's key commands (sigild key list|rotate).
type Keys struct {
	hsm    *hsm.HSM
	store  store.Store
	tokens *signer.KeySet
}

// OpenKeys opens the configured HSM and store and reads the token key set;
// Close releases them.
func OpenKeys(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Keys, error) {
	h, err := OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return nil, err
	}
	k := &Keys{hsm: h}
	if k.store, err = backend.Open(ctx, cfg.Store); err != nil {
		k.Close()
		return nil, err
	}
	k.tokens, err = signer.NewKeySet(hsmkeys.New(h), cfg.Tokens.KeyLabel, k.store, signer.WithLead(cfg.Tokens.RotationLead),
		signer.WithRetain(cfg.Tokens.MaxTTL), signer.WithLogger(log))
	if err == nil {
		err = k.tokens.Refresh(ctx)
	}
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("daemon: token keys: %w (run `sigild init` first)", err)
	}
	return k, nil
}

// Close releases the store and the HSM.
func (k *Keys) Close() {
	if k.store != nil {
		k.store.Close()
	}
	k.hsm.Close()
}

// KeyStatus is a key on the HSM and, for a version of the token signing
// key, its schedule (zero times for the other keys).
type KeyStatus struct {
	Label, Alg, KID string
	// Token is set for the token signing key's versions.
	Token *signer.KeyState
}

// List returns every key on the HSM, the token key's versions with their
// schedule: when each is published, signs, stops signing and leaves JWKS.
func (k *Keys) List(ctx context.Context) ([]KeyStatus, error) {
	infos, err := k.hsm.List(ctx)
	if err != nil {
		return nil, err
	}
	schedule := map[string]signer.KeyState{}
	for _, s := range k.tokens.Status() {
		schedule[s.Label] = s
	}
	out := make([]KeyStatus, len(infos))
	for i, info := range infos {
		out[i] = KeyStatus{Label: info.Label, Alg: string(info.Alg), KID: info.KID}
		if s, ok := schedule[info.Label]; ok {
			out[i].Token = &s
		}
	}
	return out, nil
}

// RotateToken creates the next version of the token signing key, through
// the key set so that its first sighting is recorded for every replica, and
// logs key.rotated. The key is published at once and signs after
// tokens.rotation_lead; a running sigild picks it up at its next key
// refresh, or at once on SIGHUP. Rotations through several replicas at
// once each create their own version, one after the other (keysLock).
func (k *Keys) RotateToken(ctx context.Context) (signer.KeyState, error) {
	unlock, err := lockKeys(ctx, k.store)
	if err != nil {
		return signer.KeyState{}, err
	}
	defer unlock()
	s, err := k.tokens.Rotate(ctx)
	if err != nil {
		return signer.KeyState{}, err
	}
	entry := audit.Key{Label: s.Label, KID: s.KID, Alg: s.Alg, Purpose: "token"}
	if err := store.RecordAudit(ctx, k.store, audit.KeyRotated, entry, "kid:"+s.KID); err != nil {
		return s, fmt.Errorf("daemon: key %s was created but could not be logged: %w", s.Label, err)
	}
	return s, nil
}
