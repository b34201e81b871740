package agent

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/atomicfile"
)

// OpenSSLCheck says what Run does with CheckOpenSSL's result.
type OpenSSLCheck string

// OpenSSLCheck values.
const (
	CheckWarn    OpenSSLCheck = "warn"    // log a failure, keep running (the default)
	CheckRequire OpenSSLCheck = "require" // a failure stops the agent
	CheckOff     OpenSSLCheck = "off"     // no check (no openssl on the host)
)

// Config configures Run.
type Config struct {
	StateDir string // the workload's enrollment (sigil enroll --state); required
	OutDir   string // where the chain, bundle, key and OpenSSL files go; required
	Reload   Hook   // run after the files change; nil: none

	TCTI         string       // TPM2OPENSSL_TCTI for OpenSSL; default from the TPM
	OpenSSL      string       // the openssl command; default "openssl"
	OpenSSLCheck OpenSSLCheck // default CheckWarn

	Socket      string // token service socket path; "" for none
	SocketGroup string // group that may use the socket (mode 0660); "" for owner only (0600)

	Ingress         string   // listen address of the ingress; "" for none
	Upstream        *url.URL // the service behind the ingress (http)
	IngressScope    string   // scope required of every token at the ingress
	IngressNoVerify bool     // edge: TLS without client certificates, tokens not verified

	Egress  string   // loopback listen address of the egress; "" for none
	Targets []Target // what the egress reaches

	Metrics string // listen address of /metrics; "" for none
	Ready   string // file to write the listening addresses to (JSON) once serving; removed on exit

	RenewAfter float64 // client.Config.RenewAfter
	Log        *slog.Logger
}

// Ready is what Run writes to Config.Ready once it serves.
type Ready struct {
	SPIFFEID string `json:"spiffe_id"`
	Socket   string `json:"socket,omitempty"`
	Ingress  string `json:"ingress,omitempty"`
	Egress   string `json:"egress,omitempty"`
	Metrics  string `json:"metrics,omitempty"`
}

func (c *Config) check() error {
	switch {
	case c.StateDir == "":
		return errors.New("agent: the state directory is required")
	case c.OutDir == "":
		return errors.New("agent: the output directory is required")
	case c.Ingress != "" && (c.Upstream == nil || c.Upstream.Scheme != "http" || c.Upstream.Host == ""):
		return errors.New("agent: the ingress needs an upstream http://HOST:PORT")
	case c.Egress == "" && len(c.Targets) > 0:
		return errors.New("agent: targets need an egress address")
	case c.IngressNoVerify && c.IngressScope != "":
		return errors.New("agent: an edge ingress verifies no token, so it cannot require a scope")
	}
	switch c.OpenSSLCheck {
	case "", CheckWarn, CheckRequire, CheckOff:
	default:
		return fmt.Errorf("agent: OpenSSL check %q: want warn, require or off", c.OpenSSLCheck)
	}
	if c.Egress != "" {
		return checkLoopback(c.Egress)
	}
	return nil
}

// Run is the agent until ctx ends (SIGTERM): see the package doc.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cmp.Or(cfg.Log, slog.Default())
	if cfg.Ready != "" { // a previous run's would say this one serves
		if err := os.Remove(cfg.Ready); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("agent: ready file: %w", err)
		}
	}
	st, err := client.LoadState(cfg.StateDir)
	if err != nil {
		return err
	}
	if err := prepareOpenSSL(ctx, cfg, st, log); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	clientLog := log // the client adds the SPIFFE ID itself
	log = log.With("spiffe_id", st.SPIFFEID)
	files := &fileWriter{cfg: cfg, log: log}
	c, err := client.New(ctx, client.Config{
		StateDir: cfg.StateDir, RenewAfter: cfg.RenewAfter, Log: clientLog, Registerer: reg, Renewed: files.renewed,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := files.write(ctx, c.Workload().State()); err != nil {
		return err
	}
	srv, err := serve(ctx, cfg, c, reg, log)
	if err != nil {
		srv.shutdown()
		return err
	}
	log.Info("agent running", "out", cfg.OutDir, "socket", cfg.Socket, "ingress", srv.ready.Ingress, "egress", srv.ready.Egress)
	<-ctx.Done()
	log.Info("agent stopping")
	srv.shutdown()
	log.Info("agent stopped")
	return nil
}

// prepareOpenSSL writes the OpenSSL files, tells the operator when the
// TPM has no resource manager, and runs the check.
func prepareOpenSSL(ctx context.Context, cfg Config, st *client.State, log *slog.Logger) error {
	t, err := TCTIFor(st.TPM, cfg.TCTI)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return fmt.Errorf("agent: output directory: %w", err)
	}
	if err := WriteOpenSSL(cfg.OutDir, t); err != nil {
		return err
	}
	if !t.ResourceManager {
		log.Warn("no TPM resource manager: " + t.NoResourceManager())
	}
	if cfg.OpenSSLCheck == CheckOff {
		return nil
	}
	// The key file must be in place for the check: write it from the state.
	if err := WriteFiles(cfg.OutDir, cfg.StateDir, st); err != nil {
		return err
	}
	err = CheckOpenSSL(ctx, cmp.Or(cfg.OpenSSL, "openssl"), cfg.OutDir, t, st.Chain[0].PublicKey)
	switch {
	case err == nil:
		log.Info("openssl signs with the TPM key through tpm2-openssl", "config", OpenSSLConfigFile, "tcti", t.Spec)
		return nil
	case cfg.OpenSSLCheck == CheckRequire:
		return err
	}
	log.Error("OpenSSL software cannot use the TPM key with the written configuration", "err", err, "tcti", t.Spec)
	return nil
}

// fileWriter writes the output files and runs the hook, at start and after
// each renewal.
type fileWriter struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex
}

func (f *fileWriter) renewed(st *client.State) {
	if err := f.write(context.Background(), st); err != nil {
		f.log.Error("after renewal: the files still hold the previous certificate", "err", err)
	}
}

// write writes the files and runs the hook. Only a failure to write is an
// error: a failed hook (the service not started yet, say) is logged, and
// run again after the next renewal.
func (f *fileWriter) write(ctx context.Context, st *client.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := WriteFiles(f.cfg.OutDir, f.cfg.StateDir, st); err != nil {
		return err
	}
	serial := st.Chain[0].SerialNumber.Text(16)
	f.log.Info("certificate files written", "dir", f.cfg.OutDir, "serial", serial, "expires", st.ExpiresAt)
	if f.cfg.Reload == nil {
		return nil
	}
	if err := f.cfg.Reload.Reload(ctx); err != nil {
		f.log.Error("reload hook failed: the service may still use the previous certificate", "serial", serial, "err", err)
		return nil
	}
	f.log.Info("reload hook ran", "serial", serial)
	return nil
}

// servers are the agent's listeners.
type servers struct {
	list      []*http.Server
	wg        sync.WaitGroup
	ready     Ready
	sock      string
	readyFile string
}

func (s *servers) start(srv *http.Server, ln net.Listener, log *slog.Logger, tlsCfg *tls.Config) {
	srv.ReadHeaderTimeout = readHeaderTimeout
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	s.list = append(s.list, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if tlsCfg != nil {
			ln = tls.NewListener(ln, tlsCfg)
		}
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("listener stopped", "addr", ln.Addr(), "err", err)
		}
	}()
}

// shutdown stops accepting and lets requests in flight finish, for at most
// shutdownGrace.
func (s *servers) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, srv := range s.list {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
	s.wg.Wait()
	for _, f := range []string{s.sock, s.readyFile} {
		if f != "" {
			os.Remove(f)
		}
	}
}

// serve starts what cfg asks for and writes the ready file.
func serve(ctx context.Context, cfg Config, c *client.Client, reg *prometheus.Registry, log *slog.Logger) (*servers, error) {
	s := &servers{ready: Ready{SPIFFEID: c.ID().String()}}
	ctxs := newContexts()
	if cfg.Socket != "" {
		ln, err := listenUnix(cfg.Socket, cfg.SocketGroup)
		if err != nil {
			return s, err
		}
		s.sock, s.ready.Socket = cfg.Socket, cfg.Socket
		s.start(&http.Server{Handler: NewTokenService(c, log)}, ln, log, nil)
	}
	if cfg.Ingress != "" {
		if !isLoopbackHost(cfg.Upstream.Hostname()) {
			log.Warn("the upstream is not on loopback: the identity headers travel in plain HTTP, and whoever reaches it can set them", "upstream", cfg.Upstream.Redacted())
		}
		in := &Ingress{Upstream: cfg.Upstream, Scope: cfg.IngressScope, Self: c.ID(), Log: log, contexts: ctxs}
		tlsCfg := c.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(c.ID().TrustDomain()))
		if cfg.IngressNoVerify {
			tlsCfg = tlsconfig.TLSServerConfig(c)
			tlsCfg.MinVersion = tls.VersionTLS13
		} else {
			v, err := c.Verifier(ctx)
			if err != nil {
				return s, err
			}
			in.Verifier = v
		}
		ln, err := net.Listen("tcp", cfg.Ingress)
		if err != nil {
			return s, fmt.Errorf("agent: ingress: %w", err)
		}
		s.ready.Ingress = ln.Addr().String()
		s.start(&http.Server{Handler: in.Handler()}, ln, log, tlsCfg)
	}
	if cfg.Egress != "" {
		eg := &Egress{Client: c, Targets: cfg.Targets, Log: log, contexts: ctxs}
		ln, err := net.Listen("tcp", cfg.Egress)
		if err != nil {
			return s, fmt.Errorf("agent: egress: %w", err)
		}
		s.ready.Egress = ln.Addr().String()
		s.start(&http.Server{Handler: eg.Handler()}, ln, log, nil)
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return s, fmt.Errorf("agent: metrics: %w", err)
		}
		s.ready.Metrics = ln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		s.start(&http.Server{Handler: mux}, ln, log, nil)
	}
	if cfg.Ready != "" {
		data, _ := json.Marshal(s.ready)
		if err := atomicfile.WriteMode(cfg.Ready, append(data, '\n'), 0o644); err != nil {
			return s, fmt.Errorf("agent: ready file: %w", err)
		}
		s.readyFile = cfg.Ready
	}
	return s, nil
}

// listenUnix listens on a new Unix socket at path that only its owner
// (group "") or also group may connect to. A socket left by a previous
// run is replaced; any other file at path is an error.
func listenUnix(path, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("agent: socket group: %w", err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("agent: socket group %s: gid %q", group, g.Gid)
		}
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("agent: socket %s: a file that is not a socket is there", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("agent: socket %s: another process serves on it", path)
	}
	// Made in a private directory, given its mode and group there, then
	// renamed into place: never reachable with other permissions.
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock-")
	if err != nil {
		return nil, fmt.Errorf("agent: socket: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("agent: socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it moves; shutdown removes it
	if err := setSocketMode(tmp, gid); err == nil {
		err = os.Rename(tmp, path) // replaces a socket left by a previous run
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: socket %s: %w", path, err)
	}
	return ln, nil
}

// setSocketMode gives the socket at path mode 0600, or 0660 and group gid
// when gid >= 0.
func setSocketMode(path string, gid int) error {
	if gid < 0 {
		return os.Chmod(path, 0o600)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return err
	}
	return os.Chmod(path, 0o660)
}
