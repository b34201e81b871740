// Command sigil is the CLI of workloads, auditors and policy authors:
// enroll, renew, tokens, the agent beside a service, audit verification and
// policy checks. It links no PKCS#11, SQL driver or CA; the operator
// commands that need the HSM or the database are sigild's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
)

type cli struct {
	Timeout time.Duration `default:"2m" help:"Give up after this long (a TPM in use by another process, an unreachable server)."`

	Enroll enrollCmd `cmd:"" help:"Enroll this host's TPM and obtain an X.509-SVID."`
	Renew  renewCmd  `cmd:"" help:"Renew the X.509-SVID with a fresh quote from the enrolled TPM."`

	Token      tokenCmd      `cmd:"" help:"Get a token for this workload (client_credentials over mTLS)."`
	Exchange   exchangeCmd   `cmd:"" help:"Exchange a subject token for a narrower one, acting on its behalf (RFC 8693)."`
	Introspect introspectCmd `cmd:"" help:"Show what sigild knows of a token (RFC 7662)."`
	Revoke     revokeCmd     `cmd:"" help:"Revoke a token and every token exchanged from it (RFC 7009)."`

	SVID  svidCmd  `cmd:"" name:"svid" help:"Get this process's X.509-SVID and TSS2 key from the host agent (sigil agent --host)."`
	Agent agentCmd `cmd:"" help:"Run beside a service: keep the certificate renewed in files, serve tokens on a socket, be its mTLS sidecar."`

	Policy policyCmd   `cmd:"" help:"Check and test Cedar policy directories."`
	Audit  auditCmd    `cmd:"" help:"Verify the tamper-evident audit log."`
	HSM    movedHSMCmd `cmd:"" name:"hsm" hidden:"" help:"Moved to sigild: sigild key list|rotate."`
}

// exitUsage is the exit code of a usage error (an unknown command or flag,
// a missing argument), as the README documents. kong exits with 80 on its
// own.
const exitUsage = 2

// exit ends the process for kong: --help (0) and usage errors, which kong
// reports as its ParseError's code, 80.
func exit(code int) {
	if code != 0 {
		code = exitUsage
	}
	os.Exit(code)
}

// signalContext ends on SIGTERM or SIGINT only, not after --timeout: the
// context of long-running commands (sigil agent).
type signalContext struct{ context.Context }

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	var c cli
	k := kong.Parse(&c, kong.Name("sigil"), kong.Description("sigil: hardware-rooted workload identity and tokens."), kong.Exit(exit))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k.Bind(signalContext{ctx}) // for commands that run until a signal
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	k.BindTo(ctx, (*context.Context)(nil))
	err := k.Run()
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "sigil:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}
