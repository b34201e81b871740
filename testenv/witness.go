package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// WitnessModule and WitnessVersion name the C2SP tlog-witness
// implementation the tests run: transparency-dev's omniwitness, built from
// the module proxy (go install pkg@version, outside this module's graph)
// the first time a test needs it, into a directory per user and version
// under the temporary directory that later runs reuse.
const (
	WitnessModule  = "github.com/transparency-dev/witness"
	WitnessVersion = "v0.0.0-20260720115447-2e1c6971d19e"
)

// WitnessLog is a log a witness accepts checkpoints from: its origin and
// its verifier key in the form the witness reads (audit.Verifier's
// WitnessKey).
type WitnessLog struct {
	Origin    string
	PublicKey string
}

// Witness is an omniwitness on loopback: Name and Key (its signed-note
// verifier key, Ed25519) identify its cosignatures, URL is where
// add-checkpoint is posted (URL + "/add-checkpoint"). Stop and Start it to
// test a witness that is down; its state (a SQLite file) survives.
type Witness struct {
	Name string
	Key  string
	URL  string

	dir   string
	bin   string
	ports *portPair
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
}

// StartWitness builds (once) and starts a witness that accepts checkpoints
// of logs, stopped when t ends. It makes no connection off this machine:
// it is given no feeder, bastion or distributor.
func StartWitness(t testing.TB, name string, logs ...WitnessLog) *Witness {
	t.Helper()
	bin, err := witnessBinary()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	w := &Witness{Name: name, dir: t.TempDir(), bin: bin}
	if err := w.configure(logs); err != nil {
		t.Fatalf("testenv: witness: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		w.ports.release()
	})
	if err := w.launch(); err != nil {
		t.Fatalf("testenv: witness: %v", err)
	}
	return w
}

// configure writes the witness's key and log list.
func (w *Witness) configure(logs []WitnessLog) error {
	skey, vkey, err := note.GenerateKey(rand.Reader, w.Name)
	if err != nil {
		return err
	}
	w.Key = vkey
	var y strings.Builder
	y.WriteString("Logs:\n")
	for _, l := range logs {
		fmt.Fprintf(&y, "  - Origin: %q\n    PublicKey: %q\n", l.Origin, l.PublicKey)
	}
	return errors.Join(os.WriteFile(filepath.Join(w.dir, "witness.key"), []byte(skey), 0o600),
		os.WriteFile(filepath.Join(w.dir, "logs.yaml"), []byte(y.String()), 0o600))
}

// launch starts the witness on a reserved port pair (the API on the
// first, metrics on the second), retrying with a fresh pair when a process
// outside the reservation took a port.
func (w *Witness) launch() error {
	var lastErr error
	for range 10 {
		pair, err := reservePair()
		if err != nil {
			return err
		}
		w.ports = pair
		if lastErr = w.Start(); lastErr == nil {
			return nil
		}
		pair.release()
		if !errors.Is(lastErr, errPortTaken) {
			break
		}
	}
	return lastErr
}

// Start starts the witness (again) on its ports and waits until it
// answers.
func (w *Witness) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil {
		return errors.New("witness: already running")
	}
	port := w.ports.Port
	logf, err := os.OpenFile(filepath.Join(w.dir, "witness.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(w.bin,
		"-listen", "127.0.0.1:"+strconv.Itoa(port), "-metrics_listen", "127.0.0.1:"+strconv.Itoa(port+1),
		"-db_file", filepath.Join(w.dir, "witness.db"), "-private_key_path", filepath.Join(w.dir, "witness.key"),
		"-additional_logs", filepath.Join(w.dir, "logs.yaml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("witness: start: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	w.cmd, w.done, w.URL = cmd, done, "http://127.0.0.1:"+strconv.Itoa(port)
	if err := w.awaitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		w.cmd = nil
		return err
	}
	return nil
}

// awaitReady waits until the witness answers HTTP, or exits.
func (w *Witness) awaitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			out, _ := os.ReadFile(filepath.Join(w.dir, "witness.log"))
			if bytes.Contains(out, []byte("address already in use")) {
				return errPortTaken
			}
			return fmt.Errorf("witness exited: %s", lastLines(out, 5))
		default:
		}
		// A GET of the POST-only endpoint: any answer means it listens.
		if resp, err := c.Get(w.URL + "/add-checkpoint"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling a process's startup: there is nothing to wait on
	}
	return errors.New("witness: not answering after 30s")
}

// Stop stops the witness (SIGTERM, then SIGKILL after 5 s). Stopping a
// stopped witness does nothing.
func (w *Witness) Stop() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == nil {
		return nil
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
	w.cmd = nil
	return nil
}

// lastLines returns the last n lines of out.
func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// witnessBinary builds omniwitness once per user and version, through the
// module proxy, and returns its path.
var witnessBinary = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("sigil-omniwitness-%d-%s", os.Getuid(), WitnessVersion))
	bin := filepath.Join(dir, "omniwitness")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("witness: %w", err)
	}
	// One build at a time across the test binaries `go test ./...` runs
	// side by side: the others wait for it and take its program.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("witness: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("witness: lock %s: %w", dir, err)
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("witness: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "install",
		WitnessModule+"/cmd/omniwitness@"+WitnessVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("witness: go install %s/cmd/omniwitness@%s (needs the module proxy, or the module in the cache): %w\n%s",
			WitnessModule, WitnessVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "omniwitness"), bin); err != nil {
		return "", fmt.Errorf("witness: %w", err)
	}
	return bin, nil
})
