// Command sigild is the sigil service: attested enrollment, the CA, tokens
// and the audit log, with every key in a PKCS#11 HSM; and its operator
// commands, the only ones that need the HSM or the database:
//
//	sigild init --config FILE             create HSM keys and the CA hierarchy (idempotent)
//	sigild --config FILE                  serve
//	sigild bundle|device|certificate|audit --config FILE ...
//	sigild key list|rotate --config FILE  every HSM key; rotate the token key
//	sigild restore acknowledge --config FILE --reason TEXT
//	                                      serve a database restored from a copy (audited, new feed epoch)
//	sigild restore reapply --config FILE --from EXPORT
//	                                      re-apply the revocations an audit export records
//	sigild policy confirm --config FILE VERSION
//	                                      apply a policy set held for revoking too much of the fleet
package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store/backend"
	"github.com/sigil-dev/sigil/internal/tokens"
)

type cli struct {
	Config   string `help:"Configuration file (YAML)." type:"existingfile" required:"" short:"c"`
	LogLevel string `help:"Log level: debug, info, warn, error." default:"info" enum:"debug,info,warn,error"`

	Serve   serveCmd   `cmd:"" default:"1" help:"Serve the API (the default)."`
	Init    initCmd    `cmd:"" help:"Create the HSM keys and CA certificates; keeps what exists."`
	Bundle  bundleCmd  `cmd:"" help:"Print the trust bundle (the root CA certificate, PEM)."`
	Device  deviceCmd  `cmd:"" help:"List, disable and enable enrolled devices."`
	Cert    certCmd    `cmd:"" name:"certificate" help:"Revoke a certificate for a reason."`
	Audit   auditCmd   `cmd:"" help:"The audit log's public key and offline export."`
	Key     keyCmd     `cmd:"" help:"Rotate and list the token signing keys (rotations are logged)."`
	Restore restoreCmd `cmd:"" help:"After restoring the database from a copy: acknowledge it, re-apply lost revocations."`
	Policy  policyCmd  `cmd:"" help:"Confirm a policy set held for revoking more than policy.max_revoke_fraction of the fleet."`
}

type bundleCmd struct{}

func (bundleCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer h.Close()
	pki, err := daemon.Load(ctx, cfg, h)
	if err != nil {
		return err
	}
	return pem.Encode(os.Stdout, &pem.Block{Type: "CERTIFICATE", Bytes: pki.Root.Raw})
}

type serveCmd struct {
	Pprof string `help:"Serve Go's pprof profiles on this loopback address (off by default)." placeholder:"127.0.0.1:PORT"`
}

type initCmd struct{}

func (initCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer h.Close()
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	pki, err := daemon.Init(ctx, cfg, h, st, log)
	if err != nil {
		return err
	}
	origin, err := daemon.AuditOrigin(ctx, cfg, st, pki.AuditKey.Public(), log)
	if err != nil {
		return err
	}
	fmt.Printf("root CA:    %s (key %s)\nissuing CA: %s (key %s)\nTLS:        %s (key %s)\naudit log:  %s (key %s)\ntokens:     %s (key %s, %s)\n",
		pki.Root.Subject, pki.RootKey.KID(), pki.Issuer.Subject, pki.IssuerKey.KID(), pki.TLS.Subject, pki.TLSKey.KID(),
		origin, pki.AuditKey.KID(), cfg.TokenIssuer(), pki.TokenKey.KID(), pki.TokenKey.Alg())
	joined, err := daemon.JoinReplica(ctx, cfg, st, pki)
	if joined {
		fmt.Printf("anchor:     %s (this replica joins the shared database at its latest checkpoint)\n", cfg.Audit.Anchor)
	}
	return err
}

func (c serveCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	tuneGC()
	if c.Pprof != "" {
		if err := servePprof(c.Pprof, log); err != nil {
			return err
		}
	}
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := d.Reload(ctx); err != nil {
				log.Error("reload incomplete; what failed to load stays as it was", "err", err)
			}
		}
	}()
	return d.Serve(ctx)
}

// exitUsage is the exit code of a usage error (an unknown command or flag,
// a missing argument) and of a configuration that does not load.
const exitUsage = 2

// exit ends the process for kong: --help (0) and usage errors, which kong
// would end with 80.
func exit(code int) {
	if code != 0 {
		code = exitUsage
	}
	os.Exit(code)
}

func main() {
	var c cli
	k := kong.Parse(&c, kong.Name("sigild"), kong.Description("sigil: hardware-rooted workload identity service."), kong.Exit(exit))
	log, logs := newLogger(os.Stderr, level(c.LogLevel), tokens.LogIssued)
	defer logs.Flush()
	if err := checkTimerSlack(); err != nil {
		fmt.Fprintln(os.Stderr, "sigild:", err)
		os.Exit(exitUsage)
	}
	cfg, err := config.Load(c.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sigild:", err)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k.BindTo(ctx, (*context.Context)(nil))
	if err := k.Run(cfg, log); err != nil {
		log.Error("sigild failed", "err", err)
		fmt.Fprintln(os.Stderr, "sigild:", err)
		os.Exit(1)
	}
}

func level(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}
