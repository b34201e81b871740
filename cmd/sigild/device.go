package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

type deviceCmd struct {
	List    deviceListCmd    `cmd:"" help:"List enrolled devices."`
	Disable deviceDisableCmd `cmd:"" help:"Disable a device and revoke its certificates (they appear in the CRL and on the revocation feed) and every token bound to them or exchanged from those."`
	Enable  deviceEnableCmd  `cmd:"" help:"Enable a disabled device again (revoked certificates stay revoked)."`
}

type deviceListCmd struct{}

func (deviceListCmd) Run(ctx context.Context, cfg *config.Config) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	devices, err := st.Devices(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "EK HASH\tAK HASH\tSTATUS\tENROLLED\tIDENTITIES")
	for _, d := range devices {
		ids, err := identities(ctx, st, d.EKHash)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.EKHash, d.AKHash[:16]+"…", d.Status, d.CreatedAt.Format(time.RFC3339), strings.Join(ids, " "))
	}
	return w.Flush()
}

// identities lists the SPIFFE IDs the device's certificates were issued
// for, each once, oldest first: which device to disable for a workload.
func identities(ctx context.Context, st store.CertificateReader, ekHash string) ([]string, error) {
	certs, err := st.DeviceCertificates(ctx, ekHash)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range certs {
		if !slices.Contains(ids, c.SPIFFEID) {
			ids = append(ids, c.SPIFFEID)
		}
	}
	return ids, nil
}

type deviceDisableCmd struct {
	EKHash string `arg:"" name:"ek-hash" help:"The device's EK hash (hex SHA-256 of the EK public key)."`
}

func (c deviceDisableCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return setStatus(ctx, cfg, log, c.EKHash, store.DeviceDisabled)
}

type deviceEnableCmd struct {
	EKHash string `arg:"" name:"ek-hash" help:"The device's EK hash (hex SHA-256 of the EK public key)."`
}

func (c deviceEnableCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return setStatus(ctx, cfg, log, c.EKHash, store.DeviceActive)
}

func setStatus(ctx context.Context, cfg *config.Config, log *slog.Logger, ekHash string, status store.DeviceStatus) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	revoked, err := device.SetStatus(ctx, st, ekHash, status, time.Now())
	if err != nil {
		return err
	}
	log.Info("device status changed", "ek", ekHash, "status", status, "revoked_certificates", revoked.Certificates, "revoked_tokens", revoked.Tokens)
	fmt.Printf("device %s is %s; %d certificates revoked, %d tokens revoked\n", ekHash, status, len(revoked.Certificates), len(revoked.Tokens))
	for _, s := range revoked.Certificates {
		fmt.Printf("  revoked certificate %s\n", s)
	}
	for _, jti := range revoked.Tokens {
		fmt.Printf("  revoked token %s\n", jti)
	}
	return nil
}
