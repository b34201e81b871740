package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"syscall"

	"github.com/sigil-dev/sigil/internal/agent"
)

type agentCmd struct {
	State     string   `help:"State directory written by sigil enroll." type:"existingdir" required:""`
	Out       string   `help:"Directory for svid.pem, svid.pem.key (TSS2), bundle.pem, openssl.cnf, openssl.env." type:"path" required:""`
	ReloadCmd string   `name:"reload-cmd" help:"Run this (with /bin/sh -c) after the files change." xor:"reload"`
	PIDFile   string   `name:"pid-file" help:"Signal the process in this pid file after the files change." type:"path" xor:"reload"`
	Signal    string   `help:"Signal for --pid-file: HUP, USR1, USR2." default:"HUP" enum:"HUP,USR1,USR2"`
	TCTI      string   `name:"tcti" help:"TPM2OPENSSL_TCTI for OpenSSL software (default: from the enrolled TPM), e.g. tabrmd:bus_type=session,bus_name=NAME."`
	Check     string   `name:"openssl-check" help:"Check that OpenSSL signs with the TPM key: warn, require or off." default:"warn" enum:"warn,require,off"`
	Socket    string   `help:"Serve the local token service on this Unix socket." type:"path"`
	Group     string   `name:"socket-group" help:"Group that may use the socket (mode 0660); default owner only (0600)."`
	Ingress   string   `help:"Ingress sidecar: listen for mTLS on HOST:PORT in front of --upstream."`
	Upstream  string   `help:"The local plain-HTTP service behind the ingress, http://HOST:PORT."`
	Scope     string   `name:"ingress-scope" help:"Scope required of every token at the ingress."`
	NoVerify  bool     `name:"ingress-edge" help:"Edge service: the ingress serves TLS without client certificates and passes Authorization (a user's token) through unverified."`
	Egress    string   `help:"Egress sidecar: listen for plain HTTP on this loopback HOST:PORT."`
	Target    []string `help:"Egress target NAME='https://HOST:PORT SPIFFE_ID [SCOPE…]'; repeatable." sep:"none"`
	Metrics   string   `help:"Serve the client metrics (Prometheus) on HOST:PORT /metrics."`
	Ready     string   `help:"Write the listening addresses (JSON) to this file once serving; removed on exit." type:"path"`
	Log       string   `name:"log-format" help:"Log format: text or json." default:"text" enum:"text,json"`

	RenewAfter float64 `name:"renew-after" hidden:"" help:"Renew after this fraction of the certificate's lifetime (tests)."`
}

// Run is the agent until SIGTERM or SIGINT; it ignores --timeout.
func (c agentCmd) Run(sig signalContext) error {
	cfg := agent.Config{
		StateDir: c.State, OutDir: c.Out, TCTI: c.TCTI, OpenSSLCheck: agent.OpenSSLCheck(c.Check),
		Socket: c.Socket, SocketGroup: c.Group,
		Ingress: c.Ingress, IngressScope: c.Scope, IngressNoVerify: c.NoVerify,
		Egress: c.Egress, Metrics: c.Metrics, Ready: c.Ready, RenewAfter: c.RenewAfter,
		Log: c.logger(),
	}
	switch {
	case c.ReloadCmd != "":
		cfg.Reload = agent.CommandHook{Command: c.ReloadCmd}
	case c.PIDFile != "":
		cfg.Reload = agent.SignalHook{PIDFile: c.PIDFile, Signal: map[string]syscall.Signal{"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2}[c.Signal]}
	}
	if c.Upstream != "" {
		u, err := url.Parse(c.Upstream)
		if err != nil {
			return fmt.Errorf("--upstream: %w", err)
		}
		cfg.Upstream = u
	}
	for _, t := range c.Target {
		tg, err := agent.ParseTarget(t)
		if err != nil {
			return err
		}
		cfg.Targets = append(cfg.Targets, tg)
	}
	err := agent.Run(sig, cfg)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return exitCode(err)
}

func (c agentCmd) logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if c.Log == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
