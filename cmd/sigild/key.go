package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

type keyCmd struct {
	Rotate keyRotateCmd `cmd:"" help:"Rotate a key: the token signing key publishes at once in JWKS and signs after tokens.rotation_lead."`
	List   keyListCmd   `cmd:"" help:"List the token signing keys and their schedule."`
}

type keyRotateCmd struct {
	Purpose string `help:"Which key: token (the only one whose rotation is safe while serving)." enum:"token" default:"token"`
}

// Run rotates the token key (daemon.RotateTokenKey).
func (c keyRotateCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	k, err := daemon.RotateTokenKey(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Printf("created %s (%s, kid %s): published now, signs from %s\n", k.Label, k.Alg, k.KID, k.Active.Format(time.RFC3339))
	return nil
}

type keyListCmd struct{}

// Run prints the token key versions and when each is published, signs,
// stops signing and leaves JWKS.
func (keyListCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	keys, _, closeAll, err := daemon.TokenKeys(ctx, cfg, log)
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
