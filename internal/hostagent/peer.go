package hostagent

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sigil-dev/sigil/api"
)

// Limits on what is read from /proc about a caller.
const (
	maxCgroupFile = 64 << 10
	maxExeHashes  = 1024 // cached executable digests
)

// ErrPeerGone means the caller exited (or its pid was reused) while its
// facts were read: they may describe another process, so none are used.
var ErrPeerGone = errors.New("hostagent: the calling process went away while it was being identified")

// peerFacts identifies the process at the other end of conn: its uid and
// gid as the kernel recorded them at connect(2) (SO_PEERCRED), and, from
// /proc/PID, its executable, that executable's SHA-256, its cgroup and
// systemd unit.
//
// A pid can be reused once its process has exited, so /proc/PID could
// describe another process. The agent holds a pidfd of the caller — from
// the kernel with the credentials (SO_PEERPIDFD, Linux 6.5) where it can,
// else pidfd_open(2) right away — and after reading /proc checks through
// it that the caller is still alive: a live process keeps its pid, so
// what was read was the caller's. Only on kernels without SO_PEERPIDFD is
// there a window, between connect(2) and pidfd_open(2), in which an exited
// caller's pid could be reused; the caller's socket is then held by
// another process it passed it to, whose facts are read instead.
func (h *hasher) peerFacts(conn *net.UnixConn) (*api.Workload, error) {
	cred, pidfd, err := peerCred(conn)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pidfd)
	pid := int(cred.Pid)
	w := &api.Workload{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		w.User = u.Username
	}
	if w.Exe, w.ExeSHA256, err = h.exe(pid); err != nil {
		return nil, err
	}
	if w.Cgroup, err = cgroup(pid); err != nil {
		return nil, err
	}
	w.Unit = unitOf(w.Cgroup)
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return nil, fmt.Errorf("%w: pid %d: %v", ErrPeerGone, pid, err)
	}
	return w, nil
}

// peerCred reads the caller's credentials and a pidfd of it.
func peerCred(conn *net.UnixConn) (*unix.Ucred, int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, -1, fmt.Errorf("hostagent: peer credentials: %w", err)
	}
	var (
		cred       *unix.Ucred
		pidfd      = -1
		cerr, perr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		pidfd, perr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	}); err != nil {
		return nil, -1, fmt.Errorf("hostagent: peer credentials: %w", err)
	}
	if cerr != nil {
		return nil, -1, fmt.Errorf("hostagent: SO_PEERCRED: %w", cerr)
	}
	if cred.Pid <= 0 {
		return nil, -1, errors.New("hostagent: the caller has no pid in this pid namespace")
	}
	if perr != nil || pidfd < 0 {
		if pidfd, perr = unix.PidfdOpen(int(cred.Pid), 0); perr != nil {
			return nil, -1, fmt.Errorf("%w: pidfd_open %d: %v", ErrPeerGone, cred.Pid, perr)
		}
	}
	return cred, pidfd, nil
}

// hasher hashes executables, caching digests by file identity (device,
// inode, size, change time), so a busy caller is not read on every call.
type hasher struct {
	mu    sync.Mutex
	cache map[fileID]string
}

type fileID struct {
	dev, ino uint64
	size     int64
	ctimeSec int64
	ctimeNs  int64
}

// exe is the path and hex SHA-256 of the executable of pid, read through
// /proc/PID/exe: the file the process runs, even if its path was since
// replaced.
func (h *hasher) exe(pid int) (string, string, error) {
	link := "/proc/" + strconv.Itoa(pid) + "/exe"
	p, err := os.Readlink(link)
	if err != nil {
		return "", "", fmt.Errorf("%w: executable of pid %d: %v", ErrPeerGone, pid, err)
	}
	f, err := os.Open(link)
	if err != nil {
		return "", "", fmt.Errorf("hostagent: open the executable of pid %d: %w", pid, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", "", fmt.Errorf("hostagent: stat the executable of pid %d: %w", pid, err)
	}
	id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, ctimeSec: st.Ctim.Sec, ctimeNs: st.Ctim.Nsec}
	h.mu.Lock()
	sum, ok := h.cache[id]
	h.mu.Unlock()
	if ok {
		return p, sum, nil
	}
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return "", "", fmt.Errorf("hostagent: hash the executable of pid %d: %w", pid, err)
	}
	sum = hex.EncodeToString(d.Sum(nil))
	h.mu.Lock()
	if h.cache == nil || len(h.cache) >= maxExeHashes {
		h.cache = make(map[fileID]string)
	}
	h.cache[id] = sum
	h.mu.Unlock()
	return p, sum, nil
}

// cgroup is the unified (v2) cgroup path of pid, from /proc/PID/cgroup's
// "0::PATH" line; "" on a host without one.
func cgroup(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", fmt.Errorf("%w: cgroup of pid %d: %v", ErrPeerGone, pid, err)
	}
	defer f.Close()
	return parseCgroup(io.LimitReader(f, maxCgroupFile))
}

// parseCgroup finds the unified hierarchy's path in a /proc/PID/cgroup
// file.
func parseCgroup(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		if p, ok := strings.CutPrefix(s.Text(), "0::"); ok {
			return p, nil
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("hostagent: read cgroup: %w", err)
	}
	return "", nil
}

// unitOf is the systemd unit a cgroup path ends in (a .service or .scope),
// "" outside one.
func unitOf(cg string) string {
	base := path.Base(cg)
	if strings.HasSuffix(base, ".service") || strings.HasSuffix(base, ".scope") {
		return base
	}
	return ""
}
