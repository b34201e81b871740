package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/sigil-dev/sigil/client"
)

type enrollCmd struct {
	Server   string `help:"sigild URL, https://HOST:PORT." env:"SIGIL_SERVER" required:""`
	CABundle string `name:"ca-bundle" help:"PEM trust bundle for the server." env:"SIGIL_CA_BUNDLE" type:"existingfile" required:""`
	TPM      string `name:"tpm" help:"TPM: /dev/tpmrm0 or swtpm:HOST:PORT." default:"/dev/tpmrm0"`
	EventLog string `help:"Measured-boot event log (default: the kernel's)."`
	Identity string `help:"SPIFFE ID to enroll as." required:""`
	State    string `help:"State directory for the TPM key blobs and the certificate." type:"path" required:""`
}

func (c enrollCmd) Run(ctx context.Context) error {
	roots, err := readBundle(c.CABundle)
	if err != nil {
		return err
	}
	st, err := client.Enroll(ctx, client.EnrollConfig{
		Server: c.Server, Roots: roots, TPM: c.TPM, EventLog: c.EventLog,
		Identity: c.Identity, StateDir: c.State,
	})
	if err != nil {
		var se *client.ServerError
		if errors.As(err, &se) && se.Code == "policy_denied" {
			return &exitError{code: 3, err: err}
		}
		return err
	}
	fmt.Printf("enrolled %s\n  certificate serial %s, expires %s\n  evidence %s, policy %s\n  state in %s\n",
		st.SPIFFEID, st.Chain[0].SerialNumber.Text(16), st.ExpiresAt.Format("2006-01-02 15:04:05 MST"),
		st.EvidenceDigest, st.PolicyVersion, c.State)
	return nil
}

func readBundle(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
