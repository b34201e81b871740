// Package testenv starts the real dependencies sigil's tests and demo use:
// swtpm instances with EK certificates from a private CA and a synthetic
// measured boot (swtpm*.go, eventlog.go; testenv/swtpm.sh does the same from
// a shell), and SoftHSM tokens (softhsm*.go). Tests fail, never skip, when a
// tool is missing. The daemons' loopback ports are reserved across test
// processes (ports.go; ports.sh for the scripts), and WaitFor (wait.go) is
// how a test waits for something to happen.
package testenv

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallSWTPM says how to get the tools the swtpm helpers run.
const InstallSWTPM = "apt-get install swtpm swtpm-tools tpm2-openssl (or run make test)"

// TPM is one running swtpm: its own state directory, TPM 2.0 commands on
// 127.0.0.1:Port and the control channel on Port+1 (the layout the tpm2-tss
// swtpm TCTI expects), RSA 2048 and ECC P-384 EKs with certificates from EKCA.
type TPM struct {
	// Addr is what tpm.Open takes: "swtpm:127.0.0.1:PORT".
	Addr string
	// Host and Port serve TPM commands; CtrlPort is swtpm's control channel.
	Host     string
	Port     int
	CtrlPort int
	// Dir holds everything of this instance; StateDir is swtpm's --tpmstate.
	Dir      string
	StateDir string
	// EKCA issued the EK certificates. EKRoots trusts it and EKCAPath is its
	// PEM certificate (Dir/ek-ca.pem).
	EKCA     *EKCA
	EKRoots  *x509.CertPool
	EKCAPath string
	// EventLogPath is where Boot writes the measured-boot event log.
	EventLogPath string

	ports    *portPair
	cmd      *exec.Cmd
	done     chan struct{} // closed when the swtpm process has exited
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// PID returns the swtpm process id, for tests that stop or kill it.
func (tp *TPM) PID() int { return tp.cmd.Process.Pid }

// TCTI returns the tpm2-tss TCTI string for this TPM, for tpm2-tools and the
// tpm2-openssl provider (TPM2TOOLS_TCTI, TPM2OPENSSL_TCTI).
func (tp *TPM) TCTI() string {
	return fmt.Sprintf("swtpm:host=%s,port=%d", tp.Host, tp.Port)
}

// Option configures Start and SWTPM.
type Option func(*options)

type options struct {
	ca          *EKCA
	shared      bool
	deathSignal syscall.Signal
}

// WithEKCA makes the TPM's EK certificates come from ca, so several TPMs can
// share one EK root (like TPMs from one manufacturer). By default every TPM
// gets a CA of its own in Dir/ekca.
func WithEKCA(ca *EKCA) Option { return func(o *options) { o.ca = ca } }

// SharedIdentity makes the TPM a copy of one provisioned once per process: it
// has the same EKs, EK certificates (from one EK CA) and SRK as every other
// TPM started with SharedIdentity in this process (so key blobs of one load in
// the others), but its own swtpm, state and PCRs. It skips swtpm_setup and its RSA key generation (0.5 s idle,
// several seconds on a loaded machine). Use it when a test does not care which
// TPM it is; never when two TPMs must differ. The EKCA of such a TPM has no
// Dir: it cannot issue certificates.
func SharedIdentity() Option { return func(o *options) { o.shared = true } }

// SWTPM starts a fresh swtpm for the test in t.TempDir() and stops it when the
// test ends. Each call makes a new TPM with its own EKs and EK CA unless
// SharedIdentity or WithEKCA says otherwise. It fails the test if swtpm is
// not installed.
func SWTPM(t testing.TB, opts ...Option) *TPM {
	t.Helper()
	RequireSWTPM(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts = append([]Option{func(o *options) { o.deathSignal = syscall.SIGKILL }}, opts...)
	tp, err := Start(ctx, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := tp.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return tp
}

// RequireSWTPM fails the test when swtpm, swtpm_setup or swtpm_localca is
// missing, saying how to install them.
func RequireSWTPM(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup", "swtpm_localca"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("testenv: %s not found: %s", tool, InstallSWTPM)
		}
	}
}

// Start provisions (once) and starts a swtpm whose files all live in dir. The
// process runs until Stop; Start does not tie it to ctx beyond start-up.
func Start(ctx context.Context, dir string, opts ...Option) (*TPM, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("swtpm: %w", err)
	}
	tp := &TPM{
		Host:         "127.0.0.1",
		Dir:          dir,
		StateDir:     filepath.Join(dir, "state"),
		EKCAPath:     filepath.Join(dir, "ek-ca.pem"),
		EventLogPath: filepath.Join(dir, "eventlog.bin"),
	}
	if err := tp.provision(ctx, o); err != nil {
		return nil, err
	}
	tp.EKRoots = tp.EKCA.Pool()
	if err := tp.launch(ctx, o.deathSignal); err != nil {
		return nil, err
	}
	return tp, nil
}

// provision gives the TPM its state: a copy of the shared one, or its own.
func (tp *TPM) provision(ctx context.Context, o options) error {
	if o.shared {
		if o.ca != nil {
			return errors.New("swtpm: SharedIdentity and WithEKCA exclude each other")
		}
		return tp.cloneShared(ctx)
	}
	ca := o.ca
	if ca == nil {
		var err error
		if ca, err = NewEKCA(filepath.Join(tp.Dir, "ekca")); err != nil {
			return err
		}
	}
	tp.EKCA = ca
	if err := ca.writeCert(tp.EKCAPath); err != nil {
		return err
	}
	return Provision(ctx, tp.StateDir, ca)
}

// Provision runs swtpm_setup for a TPM 2.0 in stateDir unless it already holds
// a state: RSA 2048 and ECC P-384 EKs (persistent at 0x81010001 and
// 0x81010016) with certificates from ca, a platform certificate, an RSA 2048
// storage root key at 0x81000001 (go-attestation's SRK handle), SHA-1 and
// SHA-256 PCR banks, NV locked. Nothing outside stateDir and ca.Dir
// is read or written.
func Provision(ctx context.Context, stateDir string, ca *EKCA) error {
	if _, err := os.Stat(filepath.Join(stateDir, "tpm2-00.permall")); err == nil {
		return nil
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	logPath := filepath.Join(filepath.Dir(stateDir), "swtpm_setup.log")
	cmd := exec.CommandContext(ctx, "swtpm_setup", "--tpm2", "--tpmstate", stateDir,
		"--create-ek-cert", "--create-platform-cert", "--lock-nvram", "--create-spk",
		"--pcr-banks", "sha1,sha256", "--config", ca.setupConf(), "--logfile", logPath)
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Dir(stateDir))
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("swtpm: swtpm_setup: %w: %s%s", err, out, tail(log, 2000))
	}
	return nil
}

// Stop ends the swtpm process: SIGTERM, then SIGKILL after 5 s, and waits for
// it. It reports an error if swtpm had died before Stop or needed SIGKILL.
func (tp *TPM) Stop() error {
	tp.stopOnce.Do(func() {
		select {
		case <-tp.done:
			tp.stopErr = fmt.Errorf("swtpm %s exited before Stop: %v%s", tp.Addr, tp.waitErr, tp.logTail())
			return
		default:
		}
		_ = tp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-tp.done:
		case <-time.After(5 * time.Second):
			_ = tp.cmd.Process.Kill()
			<-tp.done
			tp.stopErr = fmt.Errorf("swtpm %s ignored SIGTERM and was killed", tp.Addr)
		}
		tp.ports.release()
	})
	return tp.stopErr
}

// shared is the state every SharedIdentity TPM of this process starts from.
var shared struct {
	once  sync.Once
	state []byte // tpm2-00.permall
	ca    []byte // EK CA certificate, PEM
	err   error
}

func (tp *TPM) cloneShared(ctx context.Context) error {
	shared.once.Do(func() { shared.state, shared.ca, shared.err = provisionShared(ctx) })
	if shared.err != nil {
		return shared.err
	}
	if err := os.MkdirAll(tp.StateDir, 0o700); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tp.StateDir, "tpm2-00.permall"), shared.state, 0o600); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	if err := os.WriteFile(tp.EKCAPath, shared.ca, 0o644); err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	cert, err := parseCertPEM(shared.ca)
	if err != nil {
		return fmt.Errorf("swtpm: %w", err)
	}
	tp.EKCA = &EKCA{Cert: cert, CertPath: tp.EKCAPath}
	return nil
}

// provisionShared provisions a TPM in a temporary directory and keeps its
// state and EK CA certificate in memory; nothing stays on disk.
func provisionShared(ctx context.Context) (state, caPEM []byte, err error) {
	dir, err := os.MkdirTemp("", "sigil-swtpm-")
	if err != nil {
		return nil, nil, fmt.Errorf("swtpm: %w", err)
	}
	defer os.RemoveAll(dir)
	ca, err := NewEKCA(filepath.Join(dir, "ekca"))
	if err != nil {
		return nil, nil, err
	}
	stateDir := filepath.Join(dir, "state")
	if err := Provision(ctx, stateDir, ca); err != nil {
		return nil, nil, err
	}
	if state, err = os.ReadFile(filepath.Join(stateDir, "tpm2-00.permall")); err != nil {
		return nil, nil, fmt.Errorf("swtpm: %w", err)
	}
	if caPEM, err = os.ReadFile(ca.CertPath); err != nil {
		return nil, nil, fmt.Errorf("swtpm: %w", err)
	}
	return state, caPEM, nil
}

// launch starts swtpm on a reserved pair of ports (see ports.go), retrying
// with a fresh pair when a process outside the reservation took one first.
func (tp *TPM) launch(ctx context.Context, deathSignal syscall.Signal) error {
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		pair, err := reservePair()
		if err != nil {
			return fmt.Errorf("swtpm: %w", err)
		}
		err = tp.run(ctx, pair.Port, deathSignal)
		if err == nil {
			tp.ports = pair
			return nil
		}
		pair.release()
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errPortTaken) {
			break
		}
	}
	return fmt.Errorf("swtpm: start: %w", lastErr)
}

var errPortTaken = errors.New("port taken")

func (tp *TPM) run(ctx context.Context, port int, deathSignal syscall.Signal) error {
	logPath := filepath.Join(tp.Dir, "swtpm.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+tp.StateDir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear",
		"--pid", "file="+filepath.Join(tp.Dir, "swtpm.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSignal}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run swtpm: %w", err)
	}
	done := make(chan struct{})
	go func() { tp.waitErr = cmd.Wait(); close(done) }()
	tp.cmd, tp.done = cmd, done
	tp.Port, tp.CtrlPort = port, port+1
	tp.Addr = fmt.Sprintf("swtpm:%s:%d", tp.Host, port)
	return tp.awaitListening(ctx)
}

// awaitListening waits until the swtpm process itself (not whoever else may
// have grabbed the port) listens on both ports.
func (tp *TPM) awaitListening(ctx context.Context) error {
	pid := tp.cmd.Process.Pid
	for {
		select {
		case <-tp.done:
			if strings.Contains(tp.logTail(), "in use") {
				return fmt.Errorf("%w: %d", errPortTaken, tp.Port)
			}
			return fmt.Errorf("swtpm exited: %v%s", tp.waitErr, tp.logTail())
		case <-ctx.Done():
			_ = tp.cmd.Process.Kill()
			<-tp.done
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if listensOn(pid, tp.Port) && listensOn(pid, tp.CtrlPort) {
			return nil
		}
	}
}

func (tp *TPM) logTail() string {
	b, _ := os.ReadFile(filepath.Join(tp.Dir, "swtpm.log"))
	return tail(b, 2000)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\n" + string(b)
}

// listensOn reports whether process pid owns a socket listening on
// 127.0.0.1:port, from /proc/net/tcp and /proc/PID/fd.
func listensOn(pid, port int) bool {
	inode := listenInode(port)
	if inode == "" {
		return false
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, fd := range fds {
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); link == want {
			return true
		}
	}
	return false
}

func listenInode(port int) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 9 && fields[1] == local && fields[3] == "0A" {
			return fields[9]
		}
	}
	return ""
}
