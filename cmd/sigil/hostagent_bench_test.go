package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/client"
)

// hostBenchRounds is how many enrollments, and renewals of one of them,
// each path does.
const hostBenchRounds = 8

// BenchmarkHostAgent measures enrollment and renewal latency through the
// host agent (client.OpenAgent over its Unix socket; the agent drives the
// TPM and sigild) beside the direct path measured in the same run
// (client.Enroll and Workload.Renew with the TPM in this process), each on
// its own swtpm of one dev stack. It does a fixed amount of work whatever
// b.N is; read the metrics: p50 milliseconds of each, and the agent's p50
// as a multiple of the direct path's (agent-enroll-x, agent-renew-x).
func BenchmarkHostAgent(b *testing.B) {
	s := startStack(b, "2")
	pub := benchPublicDir(b)
	a := &hostAgent{s: s, socket: filepath.Join(pub, "agent.sock"), log: filepath.Join(s.dir, "host-agent.log")}
	a.start(b)
	ctx := b.Context()
	bundle, err := os.ReadFile(s.env["SIGIL_CA_BUNDLE"])
	if err != nil {
		b.Fatal(err)
	}
	addr, eventLog := s.tpm(1)
	id := func(path string, i int) string { return fmt.Sprintf("spiffe://sigil.test/workload/%s%d", path, i) }

	var directEnroll, agentEnroll, directRenew, agentRenew []time.Duration
	var direct, viaAgent *client.Workload
	for i := range hostBenchRounds {
		dir := filepath.Join(s.dir, fmt.Sprintf("direct%d", i))
		start := time.Now()
		if _, err := client.Enroll(ctx, client.EnrollConfig{Server: s.env["SIGIL_SERVER"], CABundle: bundle, TPM: addr, EventLog: eventLog,
			Identity: id("direct", i), StateDir: dir, HostState: s.env["SIGIL_HOST_STATE"]}); err != nil {
			b.Fatalf("direct enrollment: %v", err)
		}
		directEnroll = append(directEnroll, time.Since(start))
		start = time.Now()
		w, err := client.OpenAgent(ctx, a.socket, id("agent", i), false)
		if err != nil {
			b.Fatalf("enrollment through the agent: %v", err)
		}
		agentEnroll = append(agentEnroll, time.Since(start))
		if i == 0 {
			viaAgent = w
		} else {
			w.Close()
		}
	}
	// Opened only now: it holds the swtpm's one connection.
	direct, err = client.Open(ctx, filepath.Join(s.dir, "direct0"))
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	defer viaAgent.Close()
	for range hostBenchRounds {
		start := time.Now()
		if _, err := direct.Renew(ctx); err != nil {
			b.Fatalf("direct renewal: %v", err)
		}
		directRenew = append(directRenew, time.Since(start))
		start = time.Now()
		if _, err := viaAgent.Renew(ctx); err != nil {
			b.Fatalf("renewal through the agent: %v", err)
		}
		agentRenew = append(agentRenew, time.Since(start))
	}
	for range b.N {
	}
	de, ae, dr, ar := p50(directEnroll), p50(agentEnroll), p50(directRenew), p50(agentRenew)
	b.ReportMetric(ms(de), "direct-enroll-p50-ms")
	b.ReportMetric(ms(ae), "agent-enroll-p50-ms")
	b.ReportMetric(ms(dr), "direct-renew-p50-ms")
	b.ReportMetric(ms(ar), "agent-renew-p50-ms")
	b.ReportMetric(float64(ae)/float64(de), "agent-enroll-x")
	b.ReportMetric(float64(ar)/float64(dr), "agent-renew-x")
}

func p50(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return percentile(d, 50)
}

// benchPublicDir is publicDir for a benchmark.
func benchPublicDir(b *testing.B) string {
	b.Helper()
	dir, err := os.MkdirTemp("", "sigil-host-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
