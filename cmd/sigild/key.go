package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

type keyCmd struct {
	Rotate keyRotateCmd `cmd:"" help:"Rotate a key: the token signing key publishes at once in JWKS and signs after tokens.rotation_lead."`
	List   keyListCmd   `cmd:"" help:"List every key on the HSM (label, algorithm, RFC 7638 kid) and the token signing key's schedule."`
}

type keyRotateCmd struct {
	Purpose string `help:"Which key: token (the only one whose rotation is safe while serving)." enum:"token" default:"token"`
}

// Run rotates the token key (daemon.Keys.RotateToken).
func (c keyRotateCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	keys, err := daemon.OpenKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer keys.Close()
	k, err := keys.RotateToken(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("created %s (%s, kid %s): published now, signs from %s\n", k.Label, k.Alg, k.KID, k.Active.Format(time.RFC3339))
	return nil
}

type keyListCmd struct{}

// Run prints every key on the HSM and, for the token key versions, when
// each is published, signs, stops signing and leaves JWKS.
func (keyListCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	keys, err := daemon.OpenKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer keys.Close()
	list, err := keys.List(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LABEL\tALG\tKID\tPUBLISHED\tSIGNS\tSTOPS SIGNING\tLEAVES JWKS")
	for _, k := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", k.Label, k.Alg, k.KID, schedule(k))
	}
	return w.Flush()
}

// schedule is the token key columns of k, dashes for the other keys.
func schedule(k daemon.KeyStatus) string {
	if k.Token == nil {
		return "-\t-\t-\t-"
	}
	return stamp(k.Token.Seen) + "\t" + stamp(k.Token.Active) + "\t" + stamp(k.Token.Retired) + "\t" + stamp(k.Token.Withdrawn)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
