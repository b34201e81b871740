package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

type hsmCmd struct {
	Keys   hsmKeysCmd   `cmd:"" help:"List the keys on the token."`
	Rotate hsmRotateCmd `cmd:"" help:"Rotate sigild's token signing key: published in JWKS at once, signs after tokens.rotation_lead; logged."`
}

type hsmKeysCmd struct {
	URI    string `name:"hsm" help:"RFC 7512 pkcs11: URI of the token." env:"SIGIL_HSM_URI" required:""`
	PINEnv string `help:"Environment variable holding the PIN, when the URI has no pin-source." default:"SIGIL_HSM_PIN"`
}

func (c hsmKeysCmd) Run(ctx context.Context) error {
	h, err := hsm.Open(ctx, c.URI, hsm.WithPINEnv(c.PINEnv))
	if err != nil {
		return err
	}
	defer h.Close()
	keys, err := h.List(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LABEL\tALG\tKID")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\n", k.Label, k.Alg, k.KID)
	}
	return w.Flush()
}

type hsmRotateCmd struct {
	Purpose string `help:"Which key: token (the only one whose rotation is safe while sigild serves)." enum:"token" required:""`
	Config  string `help:"sigild's configuration file: its HSM, store and token settings." env:"SIGILD_CONFIG" type:"existingfile" required:""`
}

// Run rotates the token key as sigild key rotate does (daemon.RotateTokenKey).
func (c hsmRotateCmd) Run(ctx context.Context) error {
	cfg, err := config.Load(c.Config)
	if err != nil {
		return err
	}
	k, err := daemon.RotateTokenKey(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	fmt.Printf("created %s (%s, kid %s): published now, signs from %s\n", k.Label, k.Alg, k.KID, k.Active.Format(time.RFC3339))
	return nil
}
