package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsageErrorsExit2: a usage error of either binary (an unknown command
// or flag, a missing argument) exits 2, as the README says, not kong's 80;
// --help exits 0.
func TestUsageErrorsExit2(t *testing.T) {
	bin := buildCLI(t)
	config := filepath.Join(t.TempDir(), "sigild.yaml")
	if err := os.WriteFile(config, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"sigil unknown command", []string{"sigil", "enrol"}, 2},
		{"sigil unknown flag", []string{"sigil", "token", "--audiences", "x"}, 2},
		{"sigil unknown global flag", []string{"sigil", "--verbose", "renew"}, 2},
		{"sigil missing required flag", []string{"sigil", "token", "--state", "x"}, 2},
		{"sigil missing argument", []string{"sigil", "introspect", "--state", "x"}, 2},
		{"sigil no command", []string{"sigil"}, 2},
		{"sigil help", []string{"sigil", "--help"}, 0},
		{"sigild unknown command", []string{"sigild", "--config", config, "devices"}, 2},
		{"sigild unknown flag", []string{"sigild", "--config", config, "--log-levels", "info"}, 2},
		{"sigild missing config", []string{"sigild", "init"}, 2},
		{"sigild help", []string{"sigild", "--help"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(bin, tt.args[0]), tt.args[1:]...).CombinedOutput()
			code := 0
			var exit *exec.ExitError
			switch {
			case errors.As(err, &exit):
				code = exit.ExitCode()
			case err != nil:
				t.Fatal(err)
			}
			if code != tt.want {
				t.Fatalf("%s: exit %d, want %d\n%s", strings.Join(tt.args, " "), code, tt.want, out)
			}
		})
	}
}
