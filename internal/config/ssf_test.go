package config_test

import (
	"strings"
	"testing"

	"github.com/sigil-dev/sigil/internal/config"
)

func TestSSF(t *testing.T) {
	c, err := config.Parse([]byte(valid + `ssf:
  receivers:
    - id: spiffe://sigil.test/workload/siem
      push_endpoints: [https://siem.example/ssf/events]
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.SSFAudience(); got != "spiffe://sigil.test/sigild/ssf" {
		t.Errorf("default audience %s", got)
	}
	if r := c.SSF.Receivers; len(r) != 1 || r[0].PushEndpoints[0] != "https://siem.example/ssf/events" {
		t.Errorf("receivers %+v", r)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"receiver not a SPIFFE ID", "receivers: [{id: siem}]", "ssf.receivers[0].id:"},
		{"receiver twice", "receivers: [{id: spiffe://sigil.test/w/a}, {id: spiffe://sigil.test/w/a}]", "ssf.receivers[1].id: spiffe://sigil.test/w/a is listed twice"},
		{"push over http", "receivers: [{id: spiffe://sigil.test/w/a, push_endpoints: [http://siem/events]}]", "ssf.receivers[0].push_endpoints[0]: want an https:// URL"},
		{"push with user info", "receivers: [{id: spiffe://sigil.test/w/a, push_endpoints: [\"https://u:p@siem/events\"]}]", "ssf.receivers[0].push_endpoints[0]: want an https:// URL"},
		{"negative streams", "streams_per_receiver: -1", "ssf.streams_per_receiver: must not be negative"},
		{"unknown field", "receiver: []", `unknown field "receiver"`},
	} {
		_, err := config.Parse([]byte(valid + "ssf:\n  " + tt.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse error = %v, want %q", tt.name, err, tt.want)
		}
	}
}
