package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

type certCmd struct {
	Revoke certificateRevokeCmd `cmd:"" help:"Revoke one certificate for a reason (it appears in the CRL with that reason code and on the revocation feed), and every token bound to it or exchanged from those."`
}

type certificateRevokeCmd struct {
	Serial string `arg:"" help:"The certificate's serial number, hex."`
	Reason string `help:"Why: key-compromise, affiliation-changed, superseded, cessation-of-operation or privilege-withdrawn." enum:"key-compromise,affiliation-changed,superseded,cessation-of-operation,privilege-withdrawn" required:""`
}

func (c certificateRevokeCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	serial := strings.ToLower(strings.TrimPrefix(c.Serial, "0x"))
	reason := strings.ReplaceAll(c.Reason, "-", " ")
	revoked, err := device.RevokeCertificate(ctx, st, serial, reason, time.Now())
	if err != nil {
		return fmt.Errorf("revoke certificate %s: %w", serial, err)
	}
	log.Info("certificate revoked", "serial", serial, "reason", reason, "revoked_tokens", revoked.Tokens)
	fmt.Printf("certificate %s revoked (%s); %d tokens revoked\n", serial, reason, len(revoked.Tokens))
	for _, jti := range revoked.Tokens {
		fmt.Printf("  revoked token %s\n", jti)
	}
	return nil
}
