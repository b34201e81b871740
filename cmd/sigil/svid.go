package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// svidCmd gets the calling process's X.509-SVID from the host agent.
type svidCmd struct {
	Agent      string `help:"The host agent's socket (sigil agent --host --socket)." env:"SIGIL_AGENT_SOCKET" required:""`
	Identity   string `help:"SPIFFE ID to get; the agent enrolls it for this process on first use." required:""`
	Out        string `help:"Write svid.pem (chain), svid.key.pem (TSS2 PRIVATE KEY, this TPM only) and bundle.pem here." type:"path"`
	ServerAuth bool   `name:"server-auth" help:"At first enrollment, ask for a certificate that also serves mTLS."`
	Renew      bool   `help:"Have the agent renew the certificate now."`
}

func (c svidCmd) Run(ctx context.Context) error {
	w, err := client.OpenAgent(ctx, c.Agent, c.Identity, c.ServerAuth)
	if err != nil {
		return exitCode(err)
	}
	defer w.Close()
	st := w.State()
	if c.Renew {
		if st, err = w.Renew(ctx); err != nil {
			return exitCode(err)
		}
	}
	if c.Out != "" {
		if err := writeSVID(c.Out, st, w); err != nil {
			return err
		}
	}
	fmt.Printf("%s %s\n  certificate serial %s, expires %s\n  evidence %s, policy %s\n",
		map[bool]string{false: "got", true: "renewed"}[c.Renew], st.SPIFFEID, st.Chain[0].SerialNumber.Text(16),
		st.ExpiresAt.Format("2006-01-02 15:04:05 MST"), st.EvidenceDigest, st.PolicyVersion)
	return nil
}

// writeSVID writes the chain, the agent's TSS2 key and the bundle to dir.
func writeSVID(dir string, st *client.State, w *client.Workload) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var chain, bundle []byte
	for _, c := range st.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, c := range st.Bundle() {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	// The key and the bundle first, the chain last, as sigil agent writes
	// them: a reader that sees the new chain finds its key.
	for _, f := range []struct {
		name string
		data []byte
	}{{"svid.key.pem", []byte(w.KeyPEM())}, {"bundle.pem", bundle}, {"svid.pem", chain}} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}
