package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/sigil-dev/sigil/hsm"
)

type hsmCmd struct {
	URI    string `name:"hsm" help:"RFC 7512 pkcs11: URI of the token." env:"SIGIL_HSM_URI" required:""`
	PINEnv string `help:"Environment variable holding the PIN, when the URI has no pin-source." default:"SIGIL_HSM_PIN"`

	Keys hsmKeysCmd `cmd:"" help:"List the keys on the token."`
}

func (c *hsmCmd) open(ctx context.Context) (*hsm.HSM, error) {
	return hsm.Open(ctx, c.URI, hsm.WithPINEnv(c.PINEnv))
}

type hsmKeysCmd struct{}

func (hsmKeysCmd) Run(ctx context.Context, parent *hsmCmd) error {
	h, err := parent.open(ctx)
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
