package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/auditlog"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
)

type keyCmd struct {
	Rotate keyRotateCmd `cmd:"" help:"Rotate a key: the token signing key publishes at once in JWKS and signs after tokens.rotation_lead."`
	List   keyListCmd   `cmd:"" help:"List the token signing keys and their schedule."`
}

type keyRotateCmd struct {
	Purpose string `help:"Which key: token (the only one whose rotation is safe while serving)." enum:"token" default:"token"`
}

// Run rotates the token key through the key set, so its first sighting is
// recorded for every replica, and logs key.rotated.
func (c keyRotateCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	keys, st, closeAll, err := tokenKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAll()
	k, err := keys.Rotate(ctx)
	if err != nil {
		return err
	}
	entry := audit.Key{Label: k.Label, KID: k.KID, Alg: string(k.Alg), Purpose: c.Purpose}
	if err := auditlog.Record(ctx, st, audit.KeyRotated, entry, "kid:"+k.KID); err != nil {
		return fmt.Errorf("key %s was created but could not be logged: %w", k.Label, err)
	}
	fmt.Printf("created %s (%s, kid %s): published now, signs from %s\n", k.Label, k.Alg, k.KID, k.Active.Format(time.RFC3339))
	return nil
}

type keyListCmd struct{}

// Run prints the token key versions and when each is published, signs,
// stops signing and leaves JWKS.
func (keyListCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	keys, _, closeAll, err := tokenKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAll()
	for _, k := range keys.Status() {
		fmt.Printf("%s\t%s\tkid %s\tpublished %s\tsigns %s\tstops signing %s\tleaves JWKS %s\n", k.Label, k.Alg, k.KID,
			stamp(k.Seen), stamp(k.Active), stamp(k.Retired), stamp(k.Withdrawn))
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// tokenKeys opens the HSM, the store and the token key set as sigild does.
func tokenKeys(ctx context.Context, cfg *config.Config, log *slog.Logger) (*signer.KeySet, store.Store, func(), error) {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		h.Close()
		return nil, nil, nil, err
	}
	closeAll := func() { st.Close(); h.Close() }
	keys, err := signer.NewKeySet(h, cfg.Tokens.KeyLabel, st, signer.WithLead(cfg.Tokens.RotationLead),
		signer.WithRetain(cfg.Tokens.MaxTTL), signer.WithLogger(log))
	if err == nil {
		err = keys.Refresh(ctx)
	}
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return keys, st, closeAll, nil
}
