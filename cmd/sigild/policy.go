package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

type policyCmd struct {
	Confirm policyConfirmCmd `cmd:"" help:"Apply the policy set in policy.dir to the fleet although it revokes more than policy.max_revoke_fraction: revoke what it no longer permits (audited); running replicas holding it then let it take effect."`
}

type policyConfirmCmd struct {
	Version string `arg:"" help:"The version (sha256:…) of the set to apply, as sigil policy what-if or the hold reported it."`
}

func (c policyConfirmCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	a, err := daemon.ConfirmPolicy(ctx, cfg, log, c.Version)
	if err != nil {
		return err
	}
	if a.Skipped {
		fmt.Printf("policy set %s is already applied (application %d): nothing to revoke\n", c.Version, a.Seq)
		return nil
	}
	fmt.Printf("applied policy set %s (application %d): %d devices, %d certificates evaluated; revoked %d certificates and %d tokens\n",
		c.Version, a.Seq, a.Plan.Devices, a.Plan.Certificates, len(a.Revoked.Certificates), len(a.Revoked.Tokens))
	for _, rv := range a.Plan.Revoke {
		fmt.Printf("  %s  %s  %s: %s\n", rv.EKHash, rv.SPIFFEID, rv.Serial, rv.Decision)
	}
	return nil
}
