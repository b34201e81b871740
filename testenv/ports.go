package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Loopback ports for the daemons testenv starts are handed out in pairs, P
// and P+1 with P even (swtpm needs two adjacent ports; a daemon with one port
// leaves P+1 unused). A pair is reserved across processes by an exclusive
// flock(2) on the file PortsDirName-UID/P in the temporary directory, held
// until the pair is released or the holding process exits, so the test
// binaries `go test ./...` runs side by side never hand out the same pair.
// testenv/ports.sh takes the same locks for the scripts. Pairs come from
// below the kernel's ephemeral range (ip_local_port_range), where neither
// bind(0) nor connect(2) puts anything, unless PortsEnv names a range.
// Whoever is not part of this scheme can still take a port between our check
// and the daemon's bind, so starters retry with a fresh pair when the bind
// fails.
const (
	// PortsEnv, if set, is the port range "LOW-HIGH" (inclusive) to use.
	PortsEnv = "SIGIL_TEST_PORTS"
	// PortsDirName is the lock directory's name, suffixed with "-UID".
	PortsDirName = "sigil-ports"
)

// portPair is a reserved pair of loopback ports: Port and Port+1.
type portPair struct {
	Port int
	lock *os.File
}

// release gives the pair back to every process.
func (p *portPair) release() {
	if p != nil && p.lock != nil {
		_ = p.lock.Close() // closing the only descriptor drops the flock
		p.lock = nil
	}
}

// portRange is the even-aligned range [low, high) pairs are taken from.
var portRange = sync.OnceValues(func() ([2]int, error) {
	if v := os.Getenv(PortsEnv); v != "" {
		return parsePortRange(v)
	}
	return defaultPortRange(), nil
})

func parsePortRange(v string) ([2]int, error) {
	lo, hi, ok := strings.Cut(v, "-")
	low, err1 := strconv.Atoi(lo)
	high, err2 := strconv.Atoi(hi)
	low += low % 2
	pairs := (high + 1 - low) / 2
	if !ok || err1 != nil || err2 != nil || low < 1024 || high > 65535 || pairs < 1 {
		return [2]int{}, fmt.Errorf("ports: %s=%q: want LOW-HIGH, 1024 <= LOW < HIGH <= 65535, holding an even port and the next", PortsEnv, v)
	}
	return [2]int{low, low + 2*pairs}, nil
}

// defaultPortRange is 10000 up to the ephemeral range, or above it if that
// leaves too few, or everything as a last resort (retries then do the work).
func defaultPortRange() [2]int {
	const first, enough = 10000, 2000
	low, high := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		_, _ = fmt.Sscan(string(b), &low, &high)
	}
	switch {
	case low-first >= enough:
		return [2]int{first, low - low%2}
	case 65535-high >= enough:
		return [2]int{high + 1 + (high+1)%2, 65536}
	default:
		return [2]int{first, 65536}
	}
}

// reservePair locks a pair no process of this scheme holds and nothing
// listens on. It tries every pair of the range once, from a random one.
func reservePair() (*portPair, error) {
	r, err := portRange()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d", PortsDirName, os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ports: %w", err)
	}
	n := (r[1] - r[0]) / 2
	start := rand.IntN(n)
	for i := range n {
		port := r[0] + 2*((start+i)%n)
		p, err := lockPair(dir, port)
		if err != nil {
			return nil, err
		}
		if p != nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("ports: no free pair in %d-%d (all locked or in use)", r[0], r[1]-1)
}

// lockPair returns the pair at port if it can lock it and both ports are
// free, nil if not, and an error only if the lock file cannot be opened.
func lockPair(dir string, port int) (*portPair, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ports: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("ports: flock %s: %w", f.Name(), err)
	}
	if !portFree(port) || !portFree(port+1) {
		f.Close()
		return nil, nil
	}
	return &portPair{Port: port, lock: f}, nil
}

// portFree reports whether 127.0.0.1:port can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
