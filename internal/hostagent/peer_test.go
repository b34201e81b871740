package hostagent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// accept listens on a fresh socket, runs dial and returns the accepted
// connection.
func accept(t *testing.T, dial func(path string)) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dial(path)
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPeerFacts: the facts of a connection from this very process are its
// uid, gid, pid, executable and that executable's digest.
func TestPeerFacts(t *testing.T) {
	t.Parallel()
	conn := accept(t, func(path string) {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	})
	var h hasher
	f, err := h.peerFacts(conn)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if f.UID != uint32(os.Getuid()) || f.GID != uint32(os.Getgid()) || int(f.PID) != os.Getpid() {
		t.Errorf("uid/gid/pid %d/%d/%d, want %d/%d/%d", f.UID, f.GID, f.PID, os.Getuid(), os.Getgid(), os.Getpid())
	}
	if f.Exe != exe || f.ExeSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("exe %s (%s), want %s (%x)", f.Exe, f.ExeSHA256, exe, sum)
	}
	again, err := h.peerFacts(conn)
	if err != nil || *again != *f {
		t.Errorf("second look (cached digest) = %+v, %v; want %+v", again, err, f)
	}
}

// TestPeerGone: a caller that exited before the agent looked at it is not
// identified at all; its pid could already be another process's.
func TestPeerGone(t *testing.T) {
	t.Parallel()
	conn := accept(t, func(path string) {
		// The child connects and exits; its connection waits in the
		// listen backlog.
		cmd := exec.Command("python3", "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("python3 (Debian: apt-get install python3): %v\n%s", err, out)
		}
	})
	var h hasher
	f, err := h.peerFacts(conn)
	if !errors.Is(err, ErrPeerGone) {
		t.Fatalf("peerFacts of an exited caller = %+v, %v; want ErrPeerGone", f, err)
	}
}

func TestParseCgroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, path, unit string
	}{
		{"unified service", "0::/system.slice/payments.service\n", "/system.slice/payments.service", "payments.service"},
		{"hybrid, unified last", "12:cpu:/x\n1:name=systemd:/y\n0::/user.slice/user-1000.slice/session-3.scope\n", "/user.slice/user-1000.slice/session-3.scope", "session-3.scope"},
		{"container root", "0::/\n", "/", ""},
		{"v1 only", "4:memory:/a\n", "", ""},
		{"empty", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseCgroup(strings.NewReader(tc.file))
			if err != nil || p != tc.path || unitOf(p) != tc.unit {
				t.Errorf("parseCgroup = %q (unit %q), %v; want %q (unit %q)", p, unitOf(p), err, tc.path, tc.unit)
			}
		})
	}
}

// FuzzParseCgroup: whatever /proc/PID/cgroup holds, the parser returns a
// path that is one line of it, or nothing.
func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/payments.service\n"))
	f.Add([]byte("12:cpu:/x\n0::/\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseCgroup(strings.NewReader(string(data)))
		if err == nil && p != "" && !strings.Contains(string(data), "0::"+p) {
			t.Fatalf("path %q is not in the file", p)
		}
	})
}
