package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

type auditCmd struct {
	Key        auditKeyCmd        `cmd:"" help:"Print the audit log's public key (PEM), to give auditors out of band."`
	Export     auditExportCmd     `cmd:"" help:"Write the log's entries and checkpoints to a directory for offline audit."`
	WitnessKey auditWitnessKeyCmd `cmd:"" name:"witness-key" help:"Print the log's origin and public key in the form a witness (C2SP tlog-witness, transparency-dev's omniwitness) is configured with."`
}

type auditKeyCmd struct{}

// auditPublicKey reads the audit log's public key from the HSM.
func auditPublicKey(ctx context.Context, cfg *config.Config, log *slog.Logger) (crypto.PublicKey, error) {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	k, err := h.Find(ctx, cfg.Audit.KeyLabel)
	if err != nil {
		return nil, fmt.Errorf("%w (run `sigild init` first)", err)
	}
	return k.Public(), nil
}

func (auditKeyCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	pub, err := auditPublicKey(ctx, cfg, log)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return pem.Encode(os.Stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

type auditWitnessKeyCmd struct{}

func (auditWitnessKeyCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	pub, err := auditPublicKey(ctx, cfg, log)
	if err != nil {
		return err
	}
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := daemon.LogVerifier(ctx, cfg, st, pub)
	if err != nil {
		return err
	}
	fmt.Printf("Origin: %s\nPublicKey: %s\n", v.Name(), v.WitnessKey())
	return nil
}

type auditExportCmd struct {
	Dir string `arg:"" help:"Directory to write (created if missing)." type:"path"`
}

func (c auditExportCmd) Run(ctx context.Context, cfg *config.Config) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := audit.WriteExport(ctx, store.AuditStorage(st), c.Dir); err != nil {
		return err
	}
	origin := "(no checkpoint yet)"
	if note, err := st.LatestCheckpoint(ctx); err == nil && len(note) > 0 {
		if cp, err := audit.PeekCheckpoint(note); err == nil {
			origin = cp.Origin // for display: the auditor verifies it
		}
	}
	fmt.Printf("exported the audit log of %s to %s\n", origin, c.Dir)
	return nil
}
