package main_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/testenv"
)

// A dev stack whose sigild is restarted with audit.shard_period 1s: the
// log it had becomes the sealed "unsharded" shard, a new shard starts
// every second, each linked to the previous one's final checkpoint; the
// auditor follows the chain through the server (tiles per shard), again
// incrementally, and a sealed shard archived with sigild audit archive
// verifies offline from its export.
func TestAuditShardChain(t *testing.T) {
	t.Parallel()
	s := startStack(t, "1")
	// entries in the unsharded log, the auditor's certificate's among them
	serial := readPEM(t, filepath.Join(s.auditor(t), "cert.pem"))[0].SerialNumber.Text(16)
	s.stopSigild(t)
	config := filepath.Join(s.dir, "sigild.yaml")
	yaml := strings.Replace(string(readFileT(t, config)), "audit:\n", "audit:\n  shard_period: 1s\n  short_shard_periods_for_tests: true\n", 1)
	writeFile(t, config, yaml)
	s.startSigild(t)
	// A renewal in a shard of a device enrolled before sharding: the
	// auditor re-verifies its evidence with what it learnt in earlier
	// shards.
	if out, code := s.run("sigil", "renew", "--state", s.auditor(t)); code != 0 {
		t.Fatalf("renew: exit %d\n%s", code, out)
	}

	var list api.LogShards
	getJSON(t, s, api.PathLogShards, &list)
	renewed := len(list.Shards) // the renewal is in one of these
	testenv.WaitFor(t, 30*time.Second, "two more shards", func() bool {
		getJSON(t, s, api.PathLogShards, &list)
		return len(list.Shards) >= max(3, renewed+1)
	})
	first := list.Shards[0]
	if first.Name != store.UnshardedName || !first.Sealed || first.Start != 0 || first.Size == 0 || first.Checkpoint == "" {
		t.Fatalf("first shard %+v: want the sealed unsharded log from 0", first)
	}
	for i, sh := range list.Shards[1:] {
		prev := list.Shards[i]
		if sh.Origin != first.Origin+"/"+sh.Name || sh.Start != prev.Start+prev.Size {
			t.Fatalf("shard %d %+v after %+v: want origin %s/NAME, starting where the previous one ends", i+1, sh, prev, first.Origin)
		}
	}

	// The certificate's entry, found by serial in the sealed unsharded
	// shard: the proof is against that shard's final checkpoint.
	var inc api.AuditProof
	getJSON(t, s, fmt.Sprintf("%s?serial=%s&size=1", api.PathAuditInclusion, serial), &inc)
	if inc.Shard != store.UnshardedName || inc.Checkpoint != first.Checkpoint || inc.Size != first.Size {
		t.Fatalf("inclusion of serial %s: shard %q, size %d; want the sealed %s shard's, of %d entries", serial, inc.Shard, inc.Size, first.Name, first.Size)
	}
	seal, err := audit.PeekCheckpoint([]byte(inc.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	w, err := client.Open(t.Context(), s.auditor(t))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := w.TileSource("").Shard(inc.Shard).Entries(t.Context(), inc.Index, inc.Index+1)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyInclusion(audit.LeafHash(entries[0]), inc.Index, inc.Size, inc.Hashes, seal.Hash); err != nil {
		t.Fatalf("inclusion of serial %s in the sealed shard: %v", serial, err)
	}

	home := t.TempDir()
	s.env["XDG_STATE_HOME"] = home
	verify := func() string {
		t.Helper()
		out, code := s.run("sigil", "audit", "verify", "--auditor", s.auditor(t), "--wait", "10s")
		if code != 0 || !strings.Contains(out, "shard chain verified") || !strings.Contains(out, "log verified: OK") {
			t.Fatalf("audit verify: exit %d\n%s", code, out)
		}
		return out
	}
	if out := verify(); !strings.Contains(out, "1 renewals") {
		t.Fatalf("the renewal's evidence was not re-verified:\n%s", out)
	}
	if out := verify(); !strings.Contains(out, "(incremental: from") {
		t.Fatalf("the second run is not incremental:\n%s", out)
	}

	// The sealed shards, archived, verify offline as one chain; the one
	// with the renewal alone verifies but for the renewal of a device
	// enrolled before it, and says what to give.
	var exports []string
	var args []string
	for _, sh := range list.Shards[:len(list.Shards)-1] {
		export := filepath.Join(t.TempDir(), sh.Name)
		out, code := s.run("sigild", "--config", config, "audit", "archive", "--shard", sh.Name, "--out", export)
		if code != 0 {
			t.Fatalf("sigild audit archive --shard %s: exit %d\n%s", sh.Name, code, out)
		}
		exports, args = append(exports, export), append(args, "--dir", export)
	}
	out, code := s.run("sigil", append([]string{"audit", "verify", "--state", filepath.Join(t.TempDir(), "state")}, args...)...)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("shard chain verified: %d shards", len(exports))) || !strings.Contains(out, "1 renewals") {
		t.Fatalf("verify the archived shards: exit %d\n%s", code, out)
	}
	for i, export := range exports[1:] {
		sh := list.Shards[i+1]
		out, code = s.run("sigil", "audit", "verify", "--dir", export, "--shard", sh.Name, "--state", filepath.Join(t.TempDir(), "state"))
		if !strings.Contains(out, sh.Origin) || code != 0 && !strings.Contains(out, "--dir OLDEST") {
			t.Fatalf("verify the archived shard %s alone: exit %d, want it verified, or its renewal refused with what to give\n%s", sh.Name, code, out)
		}
	}
	// Dropped from the database once archived: the server lists it as
	// archived; an auditor that verified it goes on past it, a new one
	// verifies its export first.
	dropped := filepath.Join(t.TempDir(), "dropped")
	out, code = s.run("sigild", "--config", config, "audit", "archive", "--shard", store.UnshardedName, "--out", dropped, "--drop")
	if code != 0 || !strings.Contains(out, "deleted its") {
		t.Fatalf("sigild audit archive --drop: exit %d\n%s", code, out)
	}
	getJSON(t, s, api.PathLogShards, &list)
	if !list.Shards[0].Archived || list.Shards[1].Archived {
		t.Fatalf("after --drop: %+v", list.Shards[:2])
	}
	if out := verify(); !strings.Contains(out, "shard unsharded: archived") {
		t.Fatalf("verify past the archived shard:\n%s", out)
	}
	s.env["XDG_STATE_HOME"] = t.TempDir()
	out, code = s.run("sigil", "audit", "verify", "--auditor", s.auditor(t))
	if code != 1 || !strings.Contains(out, "verify its export first") {
		t.Fatalf("a new auditor past an archived shard: exit %d\n%s", code, out)
	}
	if out, code := s.run("sigil", "audit", "verify", "--dir", dropped, "--shard", store.UnshardedName); code != 0 {
		t.Fatalf("verify the dropped shard's export: exit %d\n%s", code, out)
	}
	verify()

	// A restart checks the database against the anchor, a checkpoint of
	// the current shard, and goes on from the current shard.
	s.stopSigild(t)
	s.startSigild(t)
	verify()

	out, code = s.run("sigild", "--config", config, "audit", "archive", "--shard", "2001-01-01T00Z", "--out", t.TempDir())
	if code == 0 || !strings.Contains(out, "no such shard") {
		t.Fatalf("archive of a shard that does not exist: exit %d\n%s", code, out)
	}
}
