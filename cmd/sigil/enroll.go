package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sigil-dev/sigil/client"
)

type enrollCmd struct {
	Server     string `help:"sigild URL, https://HOST:PORT." env:"SIGIL_SERVER" required:""`
	CABundle   string `name:"ca-bundle" help:"PEM trust bundle for the server." env:"SIGIL_CA_BUNDLE" type:"existingfile" required:""`
	TPM        string `name:"tpm" help:"TPM: /dev/tpmrm0 or swtpm:HOST:PORT." default:"/dev/tpmrm0"`
	EventLog   string `help:"Measured-boot event log (default: the kernel's)."`
	Identity   string `help:"SPIFFE ID to enroll as." required:""`
	State      string `help:"State directory for the TPM key blobs and the certificate." type:"path" required:""`
	ServerAuth bool   `name:"server-auth" help:"Ask for a certificate that also serves mTLS (serverAuth); renewals keep it."`
	HostState  string `name:"host-state" help:"Host state directory holding the AK every enrollment on this host shares (default: $SIGIL_HOST_STATE, /var/lib/sigil/host for root, else ~/.local/state/sigil/host)." env:"SIGIL_HOST_STATE" type:"path"`
	ReplaceAK  bool   `name:"replace-ak" help:"Replace the host's AK with a new one (audited); every identity of this host then renews with the new AK."`
}

func (c enrollCmd) Run(ctx context.Context) error {
	bundle, err := os.ReadFile(c.CABundle)
	if err != nil {
		return err
	}
	st, err := client.Enroll(ctx, client.EnrollConfig{
		Server: c.Server, CABundle: bundle, TPM: c.TPM, EventLog: c.EventLog,
		Identity: c.Identity, StateDir: c.State, ServerAuth: c.ServerAuth,
		HostState: c.HostState, ReplaceAK: c.ReplaceAK,
	})
	if err != nil {
		return exitCode(err)
	}
	report("enrolled", st, c.State)
	return nil
}

type renewCmd struct {
	State string `help:"State directory written by sigil enroll." type:"existingdir" required:""`
}

func (c renewCmd) Run(ctx context.Context) error {
	st, err := client.Renew(ctx, c.State)
	if err != nil {
		return exitCode(err)
	}
	report("renewed", st, c.State)
	return nil
}

// exitCode gives a refusal its own exit code, 3 (a policy denial, or a
// token request the policy or the token rules refuse: retrying will not
// help until the policy or the request changes), and a temporary failure
// (HSM or server unavailable) 4.
func exitCode(err error) error {
	switch {
	case errors.Is(err, client.ErrDenied):
		return &exitError{code: 3, err: err}
	case errors.Is(err, client.ErrUnavailable):
		return &exitError{code: 4, err: err}
	}
	return err
}

func report(what string, st *client.State, dir string) {
	fmt.Printf("%s %s\n  certificate serial %s, expires %s\n  evidence %s, policy %s\n  state in %s\n",
		what, st.SPIFFEID, st.Chain[0].SerialNumber.Text(16), st.ExpiresAt.Format("2006-01-02 15:04:05 MST"),
		st.EvidenceDigest, st.PolicyVersion, dir)
}
