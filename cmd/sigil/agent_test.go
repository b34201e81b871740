package main_test

import (
	"strings"
	"testing"
)

// sigil agent refuses a configuration that cannot work before it touches
// the TPM, and says which option is wrong.
func TestAgentRefusesBadOptions(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	state, out := t.TempDir(), t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"egress off loopback", []string{"--egress", "0.0.0.0:15001"}, `egress address "0.0.0.0:15001": must be on loopback`},
		{"ingress without upstream", []string{"--ingress", "127.0.0.1:0"}, "the ingress needs an upstream http://HOST:PORT"},
		{"https upstream", []string{"--ingress", "127.0.0.1:0", "--upstream", "https://127.0.0.1:1"}, "the ingress needs an upstream http://HOST:PORT"},
		{"targets without egress", []string{"--target", "p=https://127.0.0.1:1 spiffe://td/p"}, "targets need an egress address"},
		{"bad target", []string{"--egress", "127.0.0.1:0", "--target", "p=http://127.0.0.1:1 spiffe://td/p"}, "want https://HOST:PORT"},
		{"edge with scope", []string{"--ingress", "127.0.0.1:0", "--upstream", "http://127.0.0.1:1", "--ingress-edge", "--ingress-scope", "s"}, "cannot require a scope"},
		{"no enrollment", nil, "state.json: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code := runBin(t, bin, append([]string{"agent", "--state", state, "--out", out}, tt.args...)...)
			if code != 1 || !strings.Contains(got, tt.want) {
				t.Errorf("exit %d: %s\nwant exit 1 and %q", code, got, tt.want)
			}
		})
	}
	if got, code := runBin(t, bin, "agent", "--state", state, "--out", out, "--reload-cmd", "x", "--pid-file", "p"); code != 2 || !strings.Contains(got, "can't be used together") {
		t.Errorf("--reload-cmd with --pid-file: exit %d: %s", code, got)
	}
}
