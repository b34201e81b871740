package agent

import (
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSignalHookSignalsThePidFilesProcess(t *testing.T) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	pidFile := filepath.Join(t.TempDir(), "pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (SignalHook{PIDFile: pidFile, Signal: syscall.SIGUSR1}).Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGUSR1 arrived")
	}
}

func TestSignalHookRefusesBadPidFiles(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, content, want string }{
		{"empty", "", `holds "", not a process id`},
		{"init", "1\n", `holds "1", not a process id`},
		{"negative", "-5", `holds "-5", not a process id`},
		{"words", "nginx\n", `holds "nginx", not a process id`},
		{"long", strings.Repeat("1", maxPIDFile+1), "longer than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			os.WriteFile(path, []byte(tt.content), 0o600)
			err := SignalHook{PIDFile: path, Signal: syscall.SIGHUP}.Reload(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if err := (SignalHook{PIDFile: filepath.Join(dir, "missing")}).Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing pid file: %v", err)
	}
}

func TestCommandHook(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ran")
	if err := (CommandHook{Command: "echo reloaded > " + out}).Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "reloaded\n" {
		t.Errorf("the command wrote %q", b)
	}
	err := CommandHook{Command: "echo nginx: configuration file test failed >&2; exit 3"}.Reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "configuration file test failed") {
		t.Errorf("failing command: %v", err)
	}
}
