package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// SoftHSM and p11-kit locations on Debian, and how to install them.
const (
	SoftHSMModule      = "/usr/lib/softhsm/libsofthsm2.so"
	P11KitClientModule = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
	InstallSoftHSM     = "apt-get install softhsm2 p11-kit p11-kit-modules (or run make test)"
)

// HSMToken is a freshly initialised SoftHSM token, private to one test.
type HSMToken struct {
	// URI opens the token with hsm.Open: token label, SoftHSM module path
	// and pin-source pointing at PINFile.
	URI     string
	Label   string
	PIN     string
	SOPIN   string
	Module  string // SoftHSMModule: use this exact path, see SoftHSM
	PINFile string // holds PIN, mode 0600, in the test's TempDir
	Conf    string // the process-wide SOFTHSM2_CONF
}

// softhsm is the process-wide SoftHSM state. libsofthsm2 reads SOFTHSM2_CONF
// once, at C_Initialize, is loaded once per process, and does not see tokens
// that other processes create after that. So every token of a test process
// lives in one token directory and is created in-process, through the
// loaded module, and the module is kept initialised (by a crypto11 context
// on a keep-alive token) so that it is never finalised between tests.
var softhsm struct {
	once sync.Once
	err  error
	dir  string
	conf string
	keep *crypto11.Context
	p11  *pkcs11.Ctx
	mu   sync.Mutex // serialises token creation
	n    atomic.Int64
}

// SoftHSM initialises a new token with a unique label in the process-wide
// SoftHSM directory and returns it. It is safe in parallel tests. The first
// call creates the directory under $TMPDIR (sigil-softhsm-*) and sets
// SOFTHSM2_CONF; it must come before anything in the process loads
// libsofthsm2. Open tokens with Module exactly: crypto11 shares one module
// instance per path string, and a second path to the same library would
// fail with CKR_CRYPTOKI_ALREADY_INITIALIZED. Tokens are not deleted; call
// Main from TestMain to remove the directory at the end.
func SoftHSM(t testing.TB) *HSMToken {
	t.Helper()
	softhsm.once.Do(func() { softhsm.err = setupSoftHSM() })
	if softhsm.err != nil {
		t.Fatalf("testenv: SoftHSM: %v", softhsm.err)
	}
	tok := &HSMToken{Label: tokenLabel(t), PIN: randHex(8), SOPIN: randHex(8), Module: SoftHSMModule, Conf: softhsm.conf}
	if err := initToken(tok.Label, tok.SOPIN, tok.PIN); err != nil {
		t.Fatalf("testenv: SoftHSM: init token %q: %v", tok.Label, err)
	}
	tok.PINFile = filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(tok.PINFile, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatalf("testenv: SoftHSM: %v", err)
	}
	tok.URI = tokenURI(tok.Label, tok.Module, tok.PINFile)
	return tok
}

// Main runs a package's tests, then removes the process-wide SoftHSM
// directory and stops the shared PostgreSQL cluster (PostgresDB). Use it as: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	mainRunning.Store(true)
	code := m.Run()
	if softhsm.dir != "" {
		_ = os.RemoveAll(softhsm.dir)
	}
	if err := stopSharedPostgres(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// RequireSoftHSM fails the test, with install instructions, if SoftHSM or
// the p11-kit tools are missing.
func RequireSoftHSM(t testing.TB) {
	t.Helper()
	if err := findSoftHSM(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

func findSoftHSM() error {
	for _, f := range []string{SoftHSMModule, P11KitClientModule} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s missing: %s", f, InstallSoftHSM)
		}
	}
	for _, bin := range []string{"softhsm2-util", "p11-kit"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not in PATH: %s", bin, InstallSoftHSM)
		}
	}
	return nil
}

func setupSoftHSM() error {
	if err := findSoftHSM(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sigil-softhsm-")
	if err != nil {
		return err
	}
	softhsm.dir, softhsm.conf = dir, filepath.Join(dir, "softhsm2.conf")
	if err := writeSoftHSMConf(dir); err != nil {
		return err
	}
	if err := os.Setenv("SOFTHSM2_CONF", softhsm.conf); err != nil {
		return err
	}
	return keepModuleLoaded()
}

func writeSoftHSMConf(dir string) error {
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	return os.WriteFile(filepath.Join(dir, "softhsm2.conf"), []byte(conf), 0o600)
}

// keepModuleLoaded creates the keep-alive token with softhsm2-util (before
// the module is loaded here, so it is seen), then opens it with crypto11 for
// the life of the process.
func keepModuleLoaded() error {
	label, pin := "testenv-keepalive", randHex(8)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
		"--pin", pin, "--so-pin", randHex(8)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	softhsm.keep, err = crypto11.Configure(&crypto11.Config{Path: SoftHSMModule, TokenLabel: label,
		Pin: pin, MaxSessions: 2, PoolWaitTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("open keep-alive token (was libsofthsm2 loaded before testenv.SoftHSM?): %w", err)
	}
	softhsm.p11 = pkcs11.New(SoftHSMModule)
	if softhsm.p11 == nil {
		return errors.New("load " + SoftHSMModule)
	}
	return nil
}

// initToken initialises the first free slot through the loaded module.
func initToken(label, soPIN, pin string) error {
	softhsm.mu.Lock()
	defer softhsm.mu.Unlock()
	p := softhsm.p11
	slot, err := findSlot(p, func(ti pkcs11.TokenInfo) bool { return ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 })
	if err != nil {
		return err
	}
	if err := p.InitToken(slot, soPIN, label); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	slot, err = findSlot(p, func(ti pkcs11.TokenInfo) bool { return ti.Label == label })
	if err != nil {
		return err
	}
	return setUserPIN(p, slot, soPIN, pin)
}

func findSlot(p *pkcs11.Ctx, match func(pkcs11.TokenInfo) bool) (uint, error) {
	slots, err := p.GetSlotList(false)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && match(ti) {
			return s, nil
		}
	}
	return 0, errors.New("no matching SoftHSM slot")
}

func setUserPIN(p *pkcs11.Ctx, slot uint, soPIN, pin string) error {
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer func() { _ = p.CloseSession(s) }()
	if err := p.Login(s, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("C_Login(SO): %w", err)
	}
	defer func() { _ = p.Logout(s) }()
	if err := p.InitPIN(s, pin); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

// tokenLabel is unique in the process and fits the 32-byte token label.
func tokenLabel(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r < '0' || r > 'z' || (r > '9' && r < 'A') || (r > 'Z' && r < 'a') {
			return '-'
		}
		return r
	}, t.Name())
	if len(name) > 16 {
		name = name[len(name)-16:]
	}
	return fmt.Sprintf("%s-%d-%s", name, softhsm.n.Add(1), randHex(2))
}

func tokenURI(label, module, pinFile string) string {
	return "pkcs11:token=" + pctEncode(label, false) +
		"?module-path=" + pctEncode(module, true) + "&pin-source=file:" + pctEncode(pinFile, true)
}

// pctEncode percent-encodes all but RFC 3986 unreserved characters (and "/"
// in a query value), as RFC 7512 requires.
func pctEncode(s string, query bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~", c) >= 0 || query && c == '/' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// P11Kit is a `p11-kit server` exporting one SoftHSM token over a Unix
// socket: a "network HSM" that a test can stop and start again.
//
// Constraint: p11-kit-client.so takes the server address only from the
// environment (P11_KIT_SERVER_ADDRESS, else $XDG_RUNTIME_DIR/p11-kit/pkcs11),
// read in C_GetFunctionList, that is each time a module instance is created:
// for crypto11, at the first Configure for a module path and again after the
// last context on that path closed (which is how hsm reconnects). Not per
// call, and no URI attribute or config file carries it. The variable is
// process-wide, so P11KitServer sets it and holds a process-wide lock until
// the test's cleanup: tests using P11KitServer run one at a time. URI's
// module path is a per-server symlink to p11-kit-client.so, so that no other
// crypto11 context in the process shares (and keeps initialised) its module
// instance.
type P11Kit struct {
	URI     string // the token through p11-kit-client.so, same label and PIN file
	Module  string // symlink to P11KitClientModule
	Address string // P11_KIT_SERVER_ADDRESS: unix:path=Socket
	Socket  string

	t      testing.TB
	tok    *HSMToken
	bin    string
	dir    string
	conf   string  // the server's own SOFTHSM2_CONF (see privateToken)
	prev   *string // P11_KIT_SERVER_ADDRESS before
	envSet bool
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
}

var p11kitMu sync.Mutex

// P11KitServer starts a p11-kit server serving a token with tok's label and
// PINs from a token directory of its own, sets P11_KIT_SERVER_ADDRESS and
// stops everything in t.Cleanup. One per test: a second call in the same
// test would wait for the first one's cleanup forever. Call Stop and Start
// from the test's goroutine.
func P11KitServer(t testing.TB, tok *HSMToken) *P11Kit {
	t.Helper()
	RequireSoftHSM(t)
	bin, _ := exec.LookPath("p11-kit")
	p11kitMu.Lock()
	s := &P11Kit{t: t, tok: tok, bin: bin}
	t.Cleanup(s.cleanup)
	if err := s.prepare(); err != nil {
		t.Fatalf("testenv: p11-kit server: %v", err)
	}
	s.Start()
	return s
}

// prepare makes a short directory (a socket path must fit in 108 bytes),
// the module symlink, the URI, and sets the address variable.
func (s *P11Kit) prepare() error {
	dir, err := os.MkdirTemp("", "p11kit-")
	if err != nil {
		return err
	}
	s.dir, s.Socket, s.Module = dir, filepath.Join(dir, "p11kit.sock"), filepath.Join(dir, "p11-kit-client.so")
	s.Address = "unix:path=" + pctEncode(s.Socket, true)
	s.URI = tokenURI(s.tok.Label, s.Module, s.tok.PINFile)
	if err := os.Symlink(P11KitClientModule, s.Module); err != nil {
		return err
	}
	if err := s.privateToken(); err != nil {
		return err
	}
	if v, ok := os.LookupEnv("P11_KIT_SERVER_ADDRESS"); ok {
		s.prev = &v
	}
	s.envSet = true
	return os.Setenv("P11_KIT_SERVER_ADDRESS", s.Address)
}

// Start starts the server if it is not running and waits until it accepts
// connections.
func (s *P11Kit) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	_ = os.Remove(s.Socket)
	if err := s.launch(); err != nil {
		s.t.Fatalf("testenv: p11-kit server: %v", err)
	}
	if err := awaitSocket(s.Socket, s.exited, 10*time.Second); err != nil {
		s.kill()
		s.t.Fatalf("testenv: p11-kit server: %v; log:\n%s", err, s.log())
	}
}

// privateToken gives the server a token directory of its own, holding a
// token with the same label and PINs. Sharing the process-wide directory
// breaks the test process's SoftHSM: while a stopped (SIGSTOP) server holds
// a token's lock, every C_GetSlotList in this process fails with
// CKR_GENERAL_ERROR.
func (s *P11Kit) privateToken() error {
	tokens := filepath.Join(s.dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	s.conf = filepath.Join(s.dir, "softhsm2.conf")
	conf := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return err
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", s.tok.Label, "--pin", s.tok.PIN, "--so-pin", s.tok.SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return nil
}

func (s *P11Kit) launch() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "server", "-f", "--provider", SoftHSMModule, "-n", s.Socket,
		"pkcs11:token="+pctEncode(s.tok.Label, false))
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: the server forks a p11-kit-remote per connection,
	// and Stop must end those too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan error, 1)
	go func(ch chan<- error) { ch <- cmd.Wait() }(s.exited)
	return nil
}

// awaitSocket waits until the server accepts connections on path, polling
// every 10 ms; it returns at once if the server exits.
func awaitSocket(path string, exited <-chan error, limit time.Duration) error {
	deadline := time.After(limit)
	for {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			return c.Close()
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited early: %v", err)
		case <-deadline:
			return fmt.Errorf("no socket at %s after %v", path, limit)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop ends the server and every connection it serves, and returns once
// they are gone: the next PKCS#11 call through the client fails.
func (s *P11Kit) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.kill()
	}
}

// Freeze stops (SIGSTOP) the server and its connections without closing
// them: PKCS#11 calls through the client hang, as with an unresponsive
// network HSM, until Thaw.
func (s *P11Kit) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *P11Kit) Thaw() { s.signal(syscall.SIGCONT) }

func (s *P11Kit) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	}
}

// kill ends the process group; s.mu must be held.
func (s *P11Kit) kill() {
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	_ = syscall.Kill(-pgid, syscall.SIGCONT) // in case Freeze stopped it
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exited
	}
	// The forked p11-kit-remote processes are not our children: nothing
	// signals their end, so poll /proc for them, then kill what is left.
	for end := time.Now().Add(5 * time.Second); groupAlive(pgid) && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	s.cmd = nil
}

// groupAlive reports whether a live (not zombie) process is in group pgid.
func groupAlive(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		i := bytes.LastIndexByte(b, ')')
		if err != nil || i < 0 {
			continue
		}
		var state byte
		var ppid, pgrp int
		if _, err := fmt.Sscanf(string(b[i+1:]), " %c %d %d", &state, &ppid, &pgrp); err == nil &&
			pgrp == pgid && state != 'Z' {
			return true
		}
	}
	return false
}

func (s *P11Kit) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b)
}

func (s *P11Kit) cleanup() {
	defer p11kitMu.Unlock()
	s.Stop()
	switch {
	case !s.envSet:
	case s.prev != nil:
		_ = os.Setenv("P11_KIT_SERVER_ADDRESS", *s.prev)
	default:
		_ = os.Unsetenv("P11_KIT_SERVER_ADDRESS")
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
