package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

type auditCmd struct {
	Key        auditKeyCmd           `cmd:"" help:"Print the audit log's public key (PEM), to give auditors out of band."`
	Export     auditExportCmd        `cmd:"" help:"Write the log's entries and checkpoints to a directory for offline audit."`
	WitnessKey auditWitnessKeyCmd    `cmd:"" name:"witness-key" help:"Print the log's origin and public key in the form a witness (C2SP tlog-witness, transparency-dev's omniwitness) is configured with."`
	WitnessCfg auditWitnessConfigCmd `cmd:"" name:"witness-config" help:"Print the log configuration of a witness (transparency-dev's omniwitness logs.yaml) for this log: its current shard and, with audit.shard_period, the next shards' origins, which a witness must know before their first checkpoints."`
	Archive    auditArchiveCmd       `cmd:"" help:"Write a sealed shard of a log sharded by time (audit.shard_period) to a directory, as an export that sigil audit verify --dir DIR --shard NAME verifies offline."`
}

type auditKeyCmd struct{}

// auditPublicKey reads the audit log's public key from the HSM.
func auditPublicKey(ctx context.Context, cfg *config.Config, log *slog.Logger) (crypto.PublicKey, error) {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	k, err := h.Find(ctx, cfg.Audit.KeyLabel)
	if err != nil {
		return nil, fmt.Errorf("%w (run `sigild init` first)", err)
	}
	return k.Public(), nil
}

func (auditKeyCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	pub, err := auditPublicKey(ctx, cfg, log)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return pem.Encode(os.Stdout, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

type auditWitnessKeyCmd struct{}

func (auditWitnessKeyCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	st, v, err := openLogVerifier(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Printf("Origin: %s\nPublicKey: %s\n", v.Name(), v.WitnessKey())
	return nil
}

// openLogVerifier opens the store and returns it with the verifier of the
// log's checkpoints (its origin and the HSM audit key), as the witness
// commands print them. The caller closes the store.
func openLogVerifier(ctx context.Context, cfg *config.Config, log *slog.Logger) (store.Store, *audit.Verifier, error) {
	pub, err := auditPublicKey(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return nil, nil, err
	}
	v, err := daemon.LogVerifier(ctx, cfg, st, pub)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, v, nil
}

type auditWitnessConfigCmd struct {
	Next int `help:"How many shards after the current one to list (a log sharded by time), e.g. a month's worth; reconfigure the witness before they run out." default:"48"`
}

// maxNextShards bounds --next: a year of hourly shards.
const maxNextShards = 24 * 366

func (c auditWitnessConfigCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if c.Next < 0 || c.Next > maxNextShards {
		return fmt.Errorf("--next %d: want 0 to %d shards", c.Next, maxNextShards)
	}
	st, v, err := openLogVerifier(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := st.AuditShards(ctx)
	if err != nil {
		return err
	}
	current := ""
	if len(rows) > 0 {
		current = rows[len(rows)-1].Name
	}
	origins, err := witnessOrigins(v.Name(), current, cfg.Audit.ShardPeriod, time.Now(), c.Next)
	if err != nil {
		return err
	}
	fmt.Print(witnessLogsYAML(origins, v))
	return nil
}

// witnessOrigins lists the origins a witness of the log with origin base
// must know: the current shard's (base while not sharded), then, sharded
// by period, the shards of the next periods from now on, next of them
// after the one now is in.
func witnessOrigins(base, current string, period time.Duration, now time.Time, next int) ([]string, error) {
	origins := []string{base}
	if current != "" {
		o, err := audit.ShardOrigin(base, current)
		if err != nil {
			return nil, err
		}
		origins = []string{o}
	}
	if period <= 0 {
		return origins, nil
	}
	for i := range next + 1 {
		name := audit.ShardName(now.Add(time.Duration(i)*period), period)
		if name <= current {
			continue // the current shard, listed
		}
		o, err := audit.ShardOrigin(base, name)
		if err != nil {
			return nil, err
		}
		origins = append(origins, o)
	}
	return origins, nil
}

// witnessLogsYAML is the logs' list of an omniwitness configuration: each
// origin with the log key v as a witness takes it (Verifier.WitnessKey),
// the key's name being the origin.
func witnessLogsYAML(origins []string, v *audit.Verifier) string {
	var b strings.Builder
	b.WriteString("Logs:\n")
	for _, o := range origins {
		sv, err := v.Renamed(o)
		if err != nil {
			continue // origins come from ShardOrigin, valid names
		}
		fmt.Fprintf(&b, "  - Origin: %q\n    PublicKey: %q\n", o, sv.WitnessKey())
	}
	return b.String()
}

type auditExportCmd struct {
	Dir string `arg:"" help:"Directory to write (created if missing)." type:"path"`
}

func (c auditExportCmd) Run(ctx context.Context, cfg *config.Config) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	var log audit.Storage = store.AuditStorage(st)
	shards, ends, err := store.Shards(ctx, st, "")
	if err != nil {
		return err
	}
	if n := len(shards); n > 0 {
		// A sharded log: its current shard (`sigild audit archive` the sealed ones).
		log = store.ShardStorage(st, shards[n-1], ends[n-1])
	}
	if err := audit.WriteExport(ctx, log, c.Dir); err != nil {
		return err
	}
	origin := "(no checkpoint yet)"
	if note, err := log.LatestCheckpoint(ctx); err == nil && len(note) > 0 {
		if cp, err := audit.PeekCheckpoint(note); err == nil {
			origin = cp.Origin // for display: the auditor verifies it
		}
	}
	fmt.Printf("exported the audit log of %s to %s\n", origin, c.Dir)
	return nil
}

type auditArchiveCmd struct {
	Shard string `required:"" help:"The sealed shard to archive, by name (GET /log/shards lists them)."`
	Out   string `required:"" help:"Directory to write (created if missing)." type:"path"`
	Drop  bool   `help:"Then delete the shard's entries, keys and tree nodes from the database, once the export verifies against the shard's final checkpoint (its row and checkpoints stay; sigild no longer serves its tiles). Keep the export: it is the only copy."`
}

// Run exports a sealed shard: its entries, its checkpoints and its final
// checkpoint, the one the next shard's first entry carries; with --drop,
// verifies the export and deletes the shard's entries from the store.
func (c auditArchiveCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	st, err := backend.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	shards, ends, err := store.Shards(ctx, st, "")
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		return errors.New("the audit log is not sharded (audit.shard_period): use sigild audit export")
	}
	i := slices.IndexFunc(shards, func(sh store.AuditShard) bool { return sh.Name == c.Shard })
	switch {
	case i < 0:
		return fmt.Errorf("--shard %q: no such shard", c.Shard)
	case ends[i] == 0:
		return fmt.Errorf("--shard %q: the current shard is still open: only sealed shards are archived", c.Shard)
	}
	sh := shards[i]
	if sh.Archived {
		return fmt.Errorf("--shard %q: archived already: its entries are no longer in the database", c.Shard)
	}
	if i == 0 && sh.Name == store.UnshardedName {
		// The log's entries from before it was sharded, under its own
		// origin: the next shard's link names it.
		if sh.Origin, err = previousOrigin(ctx, st, ends[i]); err != nil {
			return err
		}
	}
	shard := store.ShardStorage(st, sh, ends[i])
	if err := audit.WriteExport(ctx, shard, c.Out); err != nil {
		return err
	}
	fmt.Printf("archived audit shard %s (%s, %d entries) to %s; verify it with: sigil audit verify --dir %s --shard %s\n",
		sh.Name, sh.Origin, ends[i]-sh.Start, c.Out, c.Out, sh.Name)
	if !c.Drop {
		return nil
	}
	if err := verifyArchive(ctx, cfg, log, c.Out, shard); err != nil {
		return err
	}
	if err := st.ArchiveAuditShard(ctx, sh.Start, ends[i], time.Now()); err != nil {
		return err
	}
	fmt.Printf("deleted its %d entries from the database: the export is the only copy\n", ends[i]-sh.Start)
	return nil
}

// previousOrigin returns the origin of the shard that the shard starting
// at start links to (its first entry, audit.ShardStarted).
func previousOrigin(ctx context.Context, st store.Store, start uint64) (string, error) {
	first, err := st.AuditEntries(ctx, start, start+1)
	if err != nil {
		return "", err
	}
	e, err := audit.Decode(first[0])
	if err != nil {
		return "", err
	}
	p, err := e.Payload()
	if link, ok := p.(*audit.ShardLink); err == nil && ok && link.Previous != nil {
		return link.Previous.Origin, nil
	}
	return "", fmt.Errorf("audit entry %d: not a shard link (%v)", start, err)
}

// verifyArchive verifies the export in dir of the sealed shard with the
// audit key, as an auditor would, and checks that it holds the shard's
// final checkpoint: what --drop deletes must be in the export.
func verifyArchive(ctx context.Context, cfg *config.Config, log *slog.Logger, dir string, shard store.ShardLog) error {
	pub, err := auditPublicKey(ctx, cfg, log)
	if err != nil {
		return err
	}
	final, err := shard.LatestCheckpoint(ctx)
	if err != nil {
		return err
	}
	cp, err := audit.PeekCheckpoint(final)
	if err != nil {
		return fmt.Errorf("shard %s: final checkpoint: %w", shard.Shard.Name, err)
	}
	v, err := audit.NewVerifier(cp.Origin, pub)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(ctx, audit.DirSource(dir), v, audit.VerifyOptions{})
	switch {
	case err != nil:
		return fmt.Errorf("the export does not verify, nothing deleted: %w", err)
	case rep.Size != cp.Size || !bytes.Equal(rep.Root, cp.Hash) || shard.Shard.Start+rep.Size != shard.End:
		return fmt.Errorf("the export holds %d entries with root %x, not the shard's final %d with root %x: nothing deleted", rep.Size, rep.Root, cp.Size, cp.Hash)
	}
	return nil
}
