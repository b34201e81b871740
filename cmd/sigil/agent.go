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
	"github.com/sigil-dev/sigil/internal/hostagent"
)

type agentCmd struct {
	State     string   `help:"State directory written by sigil enroll (required without --host)." type:"existingdir"`
	Out       string   `help:"Directory for svid.pem, svid.pem.key (TSS2), bundle.pem, openssl.cnf, openssl.env (required without --host)." type:"path"`
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

	hostFlags
}

// hostFlags are those of host mode: once per host (a system service), the
// agent owns the TPM and the host's AK and serves the host's workloads on
// --socket, identifying each by the kernel's peer credentials.
type hostFlags struct {
	Host      bool   `help:"Host mode: own the TPM and serve every workload of this host on --socket (see README, Many workloads on one host)."`
	Server    string `help:"sigild URL, https://HOST:PORT (host mode)." env:"SIGIL_SERVER"`
	CABundle  string `name:"ca-bundle" help:"PEM trust bundle for the server (host mode)." env:"SIGIL_CA_BUNDLE" type:"path"`
	TPM       string `name:"tpm" help:"TPM: /dev/tpmrm0 or swtpm:HOST:PORT (host mode)." default:"/dev/tpmrm0"`
	EventLog  string `help:"Measured-boot event log (host mode; default: the kernel's)."`
	HostState string `name:"host-state" help:"Host state directory: the host's AK and the agent's identities (default: $SIGIL_HOST_STATE, /var/lib/sigil/host for root)." env:"SIGIL_HOST_STATE" type:"path"`
}

// runHost runs host mode until SIGTERM or SIGINT.
func (c agentCmd) runHost(sig signalContext) error {
	switch {
	case c.Socket == "" || c.Server == "" || c.CABundle == "":
		return errors.New("sigil agent --host needs --socket, --server and --ca-bundle")
	case c.State != "" || c.Out != "" || c.Ingress != "" || c.Egress != "":
		return errors.New("sigil agent --host serves every workload of the host on --socket; --state, --out, --ingress and --egress belong to one workload's agent")
	}
	bundle, err := os.ReadFile(c.CABundle)
	if err != nil {
		return err
	}
	err = hostagent.Run(sig, hostagent.Config{
		Server: c.Server, CABundle: bundle, TPM: c.TPM, EventLog: c.EventLog, HostState: c.HostState,
		Socket: c.Socket, RenewAfter: c.RenewAfter, Log: c.logger(),
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return exitCode(err)
}

// Run is the agent until SIGTERM or SIGINT; it ignores --timeout.
func (c agentCmd) Run(sig signalContext) error {
	if c.Host {
		return c.runHost(sig)
	}
	if c.State == "" || c.Out == "" {
		return errors.New("sigil agent needs --state and --out (or --host)")
	}
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
