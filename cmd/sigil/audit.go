package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/client"
)

type auditCmd struct {
	Verify auditVerifyCmd `cmd:"" help:"Verify the audit log: signatures, hashes, consistency with what was seen before, and every enrollment's evidence."`
}

type auditVerifyCmd struct {
	Server   string `help:"sigild URL (or use --dir)." env:"SIGIL_SERVER"`
	CABundle string `name:"ca-bundle" help:"PEM trust bundle for --server." env:"SIGIL_CA_BUNDLE"`
	Dir      string `help:"An export directory (sigild audit export); takes precedence over --server." type:"existingdir"`
	Key      string `help:"The log's public key, PEM, obtained out of band." env:"SIGIL_AUDIT_KEY" type:"existingfile" required:""`
	Origin   string `help:"The log's origin line; default TRUST_DOMAIN/sigil-audit." env:"SIGIL_AUDIT_ORIGIN"`
	EKRoots  string `name:"ek-roots" help:"PEM of the EK CAs, to re-verify enrollment evidence." env:"SIGIL_EK_ROOTS" type:"existingfile" required:""`
	State    string `help:"File keeping the last verified checkpoint (default: under the user's state directory)."`
	TrustDom string `name:"trust-domain" help:"Trust domain, for the default origin." env:"SIGIL_TRUST_DOMAIN" default:"sigil.test"`
}

func (c auditVerifyCmd) Run(ctx context.Context) error {
	if c.Server == "" && c.Dir == "" {
		return errors.New("give --server (with --ca-bundle) or --dir")
	}
	origin := c.Origin
	if origin == "" {
		origin = c.TrustDom + "/sigil-audit"
	}
	keyPEM, err := os.ReadFile(c.Key)
	if err != nil {
		return err
	}
	v, err := audit.ParseVerifierPEM(origin, keyPEM)
	if err != nil {
		return err
	}
	src, err := c.source()
	if err != nil {
		return err
	}
	roots, err := pemutil.ReadCertificateBundle(c.EKRoots)
	if err != nil {
		return err
	}
	checker := attest.NewLogChecker(roots)
	state, err := c.statePath(origin)
	if err != nil {
		return err
	}
	report, err := audit.Verify(ctx, src, v, audit.VerifyOptions{StatePath: state, OnEntry: checker.Entry})
	fmt.Print(report.String())
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("audit log verification FAILED: %w", err)}
	}
	fmt.Printf("evidence re-verified offline: %d enrollments, %d renewals\nlog verified: OK\n", checker.Enrollments, checker.Renewals)
	return nil
}

func (c auditVerifyCmd) source() (audit.Source, error) {
	if c.Dir != "" {
		return audit.DirSource(c.Dir), nil
	}
	bundle, err := os.ReadFile(c.CABundle)
	if err != nil {
		return nil, fmt.Errorf("--ca-bundle: %w", err)
	}
	return client.NewAuditSource(c.Server, bundle)
}

// statePath defaults to one file per log origin under the user's state
// directory, so successive runs detect forks and rollbacks.
func (c auditVerifyCmd) statePath(origin string) (string, error) {
	if c.State != "" {
		return c.State, nil
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --state and no home directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	sum := sha256.Sum256([]byte(origin))
	return filepath.Join(base, "sigil", "audit", hex.EncodeToString(sum[:8])+".checkpoint"), nil
}
