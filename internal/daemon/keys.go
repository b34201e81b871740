package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/auditlog"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/hsmkeys"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/signer"
)

// TokenKeys opens the HSM, the store and the token key set as sigild
// does, for the key commands; close releases them.
func TokenKeys(ctx context.Context, cfg *config.Config, log *slog.Logger) (keys *signer.KeySet, st store.Store, close func(), err error) {
	h, err := OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if st, err = backend.Open(ctx, cfg.Store); err != nil {
		h.Close()
		return nil, nil, nil, err
	}
	close = func() { st.Close(); h.Close() }
	keys, err = signer.NewKeySet(hsmkeys.New(h), cfg.Tokens.KeyLabel, st, signer.WithLead(cfg.Tokens.RotationLead),
		signer.WithRetain(cfg.Tokens.MaxTTL), signer.WithLogger(log))
	if err == nil {
		err = keys.Refresh(ctx)
	}
	if err != nil {
		close()
		return nil, nil, nil, err
	}
	return keys, st, close, nil
}

// RotateTokenKey creates the next version of the token signing key, through
// the key set so that its first sighting is recorded for every replica, and
// logs key.rotated. The key is published at once and signs after
// tokens.rotation_lead; a running sigild picks it up at its next key
// refresh, or at once on SIGHUP.
func RotateTokenKey(ctx context.Context, cfg *config.Config, log *slog.Logger) (signer.KeyState, error) {
	keys, st, closeAll, err := TokenKeys(ctx, cfg, log)
	if err != nil {
		return signer.KeyState{}, err
	}
	defer closeAll()
	k, err := keys.Rotate(ctx)
	if err != nil {
		return signer.KeyState{}, err
	}
	entry := audit.Key{Label: k.Label, KID: k.KID, Alg: k.Alg, Purpose: "token"}
	if err := auditlog.Record(ctx, st, audit.KeyRotated, entry, "kid:"+k.KID); err != nil {
		return k, fmt.Errorf("key %s was created but could not be logged: %w", k.Label, err)
	}
	return k, nil
}
