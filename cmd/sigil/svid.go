package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// oldKeyFile is the name sigil svid gave the key before it took sigil
// agent's (agent.KeyFile): still written where it exists, for the
// configurations that name it.
const oldKeyFile = "svid.key.pem"

// svidCmd gets the calling process's X.509-SVID from the host agent.
type svidCmd struct {
	Agent      string `help:"The host agent's socket (sigil agent --host --socket)." env:"SIGIL_AGENT_SOCKET" required:""`
	Identity   string `help:"SPIFFE ID to get; the agent enrolls it for this process on first use." required:""`
	Out        string `help:"Write svid.pem (chain), svid.pem.key (TSS2 PRIVATE KEY, this TPM only) and bundle.pem here, as sigil agent --out does." type:"path"`
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
		old, err := writeSVID(c.Out, st, []byte(w.KeyPEM()))
		if err != nil {
			return err
		}
		if old {
			fmt.Fprintf(os.Stderr, "sigil svid: %s is the key's old name, still written; point your configuration at %s\n",
				filepath.Join(c.Out, oldKeyFile), filepath.Join(c.Out, agent.KeyFile))
		}
	}
	fmt.Printf("%s %s\n  certificate serial %s, expires %s\n  evidence %s, policy %s\n",
		map[bool]string{false: "got", true: "renewed"}[c.Renew], st.SPIFFEID, st.Chain[0].SerialNumber.Text(16),
		st.ExpiresAt.Format("2006-01-02 15:04:05 MST"), st.EvidenceDigest, st.PolicyVersion)
	return nil
}

// writeSVID writes the chain, the agent's TSS2 key and the bundle to dir,
// under sigil agent's names (agent.ChainFile, KeyFile, BundleFile), each
// replaced atomically, the key and the bundle first and the chain last, as
// sigil agent writes them: a reader that sees the new chain finds its key.
// A key under the old name (oldKeyFile) is replaced too, before the
// others (unless it is a symbolic link: its user put it where they want
// it); old reports that there was one.
func writeSVID(dir string, st *client.State, key []byte) (old bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	var chain, bundle []byte
	for _, c := range st.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	for _, c := range st.Bundle() {
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	type file struct {
		name string
		data []byte
	}
	files := []file{{agent.KeyFile, key}, {agent.BundleFile, bundle}, {agent.ChainFile, chain}}
	if fi, err := os.Lstat(filepath.Join(dir, oldKeyFile)); err == nil && fi.Mode().IsRegular() {
		old, files = true, append([]file{{oldKeyFile, key}}, files...)
	}
	for _, f := range files {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data); err != nil {
			return old, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return old, nil
}
