package hostagent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/agent"
	"github.com/sigil-dev/sigil/internal/atomicfile"
	"github.com/sigil-dev/sigil/tpm"
)

// Config configures the host agent. Server, CABundle, TPM and Socket are
// required.
type Config struct {
	Server   string // sigild, https://HOST:PORT
	CABundle []byte // PEM trust bundle for sigild
	TPM      string // /dev/tpmrm0 or swtpm:HOST:PORT
	EventLog string // measured-boot log; "" means the kernel's
	// HostState holds the host's AK and the agent's identities; ""
	// means client.DefaultHostState().
	HostState string
	// Socket is the Unix socket workloads call. It is made mode 0666:
	// every local process may ask, and the agent decides by who it is.
	Socket     string
	RenewAfter float64 // as client.Config.RenewAfter
	Log        *slog.Logger
}

// ownerFile, in an identity's directory, records whom it was enrolled for.
const ownerFile = "owner.json"

// owner is an identity's owner record.
type owner struct {
	Identity string       `json:"identity"`
	Facts    api.Workload `json:"facts"`
}

// Agent is a running host agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	tpm    *tpm.TPM
	root   string // HOST_STATE/agent
	hasher hasher

	mu    sync.Mutex
	held  map[string]*held       // by SPIFFE ID
	locks map[string]*sync.Mutex // one enrollment per identity at a time
}

// held is an identity the agent holds for a process.
type held struct {
	owner  owner
	c      *client.Client
	tokens *agent.TokenService
	keyPEM string // the TSS2 key, which renewals keep: read once
}

// Run runs the host agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	return a.Serve(ctx, ln)
}

// New opens the TPM and resumes every identity kept under the host state.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Server == "" || len(cfg.CABundle) == 0 || cfg.TPM == "" {
		return nil, errors.New("hostagent: server, CA bundle and TPM are required")
	}
	var opts []tpm.Option
	if cfg.EventLog != "" {
		opts = append(opts, tpm.WithEventLog(cfg.EventLog))
	}
	t, err := tpm.Open(ctx, cfg.TPM, opts...)
	if err != nil {
		return nil, err
	}
	cfg.HostState = cmp.Or(cfg.HostState, client.DefaultHostState())
	a := &Agent{
		cfg: cfg, log: cmp.Or(cfg.Log, slog.Default()), tpm: t, root: filepath.Join(cfg.HostState, "agent"),
		held: map[string]*held{}, locks: map[string]*sync.Mutex{},
	}
	if err := a.resume(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// resume opens every identity kept under the host state, renewing from
// where the last run stopped.
func (a *Agent) resume(ctx context.Context) error {
	if err := os.MkdirAll(a.root, 0o700); err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	dirs, err := os.ReadDir(a.root)
	if err != nil {
		return fmt.Errorf("hostagent: %w", err)
	}
	for _, d := range dirs {
		dir := filepath.Join(a.root, d.Name())
		var o owner
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue // an enrollment that did not finish
		}
		if err == nil {
			err = json.Unmarshal(data, &o)
		}
		if err != nil {
			return fmt.Errorf("hostagent: %s: %w", dir, err)
		}
		h, err := a.open(ctx, o, dir)
		if err != nil {
			return fmt.Errorf("hostagent: resume %s: %w", o.Identity, err)
		}
		a.held[o.Identity] = h
		a.log.Info("identity resumed", "spiffe_id", o.Identity, "uid", o.Facts.UID, "exe", o.Facts.Exe)
	}
	return nil
}

// open starts keeping the identity in dir renewed, asserting o's facts.
func (a *Agent) open(ctx context.Context, o owner, dir string) (*held, error) {
	key, err := os.ReadFile(filepath.Join(dir, tpm.KeyPEMFile))
	if err != nil {
		return nil, fmt.Errorf("hostagent: read the TSS2 key: %w", err)
	}
	facts := o.Facts
	c, err := client.New(ctx, client.Config{
		StateDir: dir, SharedTPM: a.tpm, Facts: &facts, RenewAfter: a.cfg.RenewAfter,
		Log: a.log.With("spiffe_id", o.Identity),
	})
	if err != nil {
		return nil, err
	}
	return &held{owner: o, c: c, tokens: agent.NewTokenService(c, a.log), keyPEM: string(key)}, nil
}

// Close stops renewing and releases the TPM.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.held {
		h.c.Close()
	}
	a.held = map[string]*held{}
	return a.tpm.Close()
}

// Serve answers workloads on ln until ctx ends.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       a.connContext,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	a.log.Info("host agent serving", "socket", ln.Addr().String(), "identities", len(a.held))
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("hostagent: serve: %w", err)
	}
	return ctx.Err()
}

// listen makes the agent's socket, replacing a stale one.
func listen(path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("hostagent: no socket")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("hostagent: socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("hostagent: remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("hostagent: socket mode: %w", err)
	}
	return ln, nil
}

// identityDir is where identity is kept.
func (a *Agent) identityDir(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return filepath.Join(a.root, hex.EncodeToString(sum[:16]))
}

// lock serialises enrollments of one identity.
func (a *Agent) lock(identity string) func() {
	a.mu.Lock()
	l, ok := a.locks[identity]
	if !ok {
		l = &sync.Mutex{}
		a.locks[identity] = l
	}
	a.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (a *Agent) lookup(identity string) *held {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held[identity]
}

// enroll enrolls identity for the process facts describes: sigild's policy
// decides on the device's evidence and the facts. The key, certificate and
// owner record are kept in the identity's directory, replacing those of a
// previous owner.
func (a *Agent) enroll(ctx context.Context, identity string, serverAuth bool, facts *api.Workload) (*held, error) {
	dir := a.identityDir(identity)
	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	_, err := client.EnrollShared(ctx, a.tpm, client.EnrollConfig{
		Server: a.cfg.Server, CABundle: a.cfg.CABundle, TPM: a.cfg.TPM, EventLog: a.cfg.EventLog,
		Identity: identity, StateDir: tmp, ServerAuth: serverAuth, HostState: a.cfg.HostState, Workload: facts,
	})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	o := owner{Identity: identity, Facts: *facts}
	data, _ := json.MarshalIndent(o, "", "  ")
	if err := atomicfile.Write(filepath.Join(tmp, ownerFile), append(data, '\n')); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	if prev := a.lookup(identity); prev != nil {
		prev.c.Close()
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	h, err := a.open(context.WithoutCancel(ctx), o, dir)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.held[identity] = h
	a.mu.Unlock()
	a.log.Info("identity enrolled", "spiffe_id", identity, "uid", facts.UID, "exe", facts.Exe, "unit", facts.Unit)
	return h, nil
}
