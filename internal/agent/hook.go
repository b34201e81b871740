package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hook tells the software that reads the output files that they changed.
type Hook interface {
	Reload(ctx context.Context) error
}

// maxPIDFile bounds what SignalHook reads from a pid file.
const maxPIDFile = 64

// hookTimeout bounds a reload command.
const hookTimeout = 30 * time.Second

// SignalHook sends Signal to the process whose pid PIDFile holds, as
// nginx (SIGHUP) or HAProxy's master (SIGUSR2) expect.
type SignalHook struct {
	PIDFile string
	Signal  syscall.Signal
}

// Reload reads the pid file and signals the process.
func (h SignalHook) Reload(context.Context) error {
	pid, err := readPID(h.PIDFile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, h.Signal); err != nil {
		return fmt.Errorf("agent: reload: signal %v to pid %d from %s: %w", h.Signal, pid, h.PIDFile, err)
	}
	return nil
}

// readPID reads a pid file: a positive decimal number other than 1 (init),
// optionally followed by a newline.
func readPID(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("agent: reload: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPIDFile+1))
	if err != nil {
		return 0, fmt.Errorf("agent: reload: read %s: %w", path, err)
	}
	if len(data) > maxPIDFile {
		return 0, fmt.Errorf("agent: reload: pid file %s is longer than %d bytes", path, maxPIDFile)
	}
	s := strings.TrimSpace(string(data))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("agent: reload: pid file %s holds %q, not a process id", path, s)
	}
	return pid, nil
}

// CommandHook runs Command with /bin/sh -c, at most 30 seconds; a non-zero
// exit is an error carrying the end of its output.
type CommandHook struct {
	Command string
}

// Reload runs the command.
func (h CommandHook) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.Command)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	tail := out.Bytes()
	if len(tail) > 512 {
		tail = tail[len(tail)-512:]
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("agent: reload command timed out after %v: %s", hookTimeout, bytes.TrimSpace(tail))
	}
	return fmt.Errorf("agent: reload command: %w: %s", err, bytes.TrimSpace(tail))
}
