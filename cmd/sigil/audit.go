package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/client"
)

type auditCmd struct {
	Verify   auditVerifyCmd   `cmd:"" help:"Verify the audit log: signatures, hashes, consistency with what was seen before, and every enrollment's evidence."`
	Evidence auditEvidenceCmd `cmd:"" help:"Write one enrollment's or renewal's quote in tpm2-tools' formats, for tpm2_checkquote."`
}

type auditVerifyCmd struct {
	Server   string        `help:"sigild URL (or use --dir)." env:"SIGIL_SERVER"`
	CABundle string        `name:"ca-bundle" help:"PEM trust bundle for --server." env:"SIGIL_CA_BUNDLE"`
	Dir      []string      `help:"An export directory (sigild audit export); takes precedence over --server. Repeat it for the archived shards of a log sharded by time (sigild audit archive), oldest first, to verify them as one chain." type:"existingdir" sep:"none"`
	Auditor  string        `help:"State directory (sigil enroll) of an identity listed in sigild's audit.readers: sigild serves entries only to those, over mTLS. With --server; default: the enrollment's server." env:"SIGIL_AUDITOR" type:"existingdir"`
	Key      string        `help:"The log's public key, PEM, obtained out of band." env:"SIGIL_AUDIT_KEY" type:"existingfile" required:""`
	Origin   string        `help:"The log's origin line; default TRUST_DOMAIN/sigil-audit/ID, ID derived from --key (what sigild init prints)." env:"SIGIL_AUDIT_ORIGIN"`
	EKRoots  string        `name:"ek-roots" help:"PEM of the EK CAs, to re-verify enrollment evidence." env:"SIGIL_EK_ROOTS" type:"existingfile" required:""`
	Wait     time.Duration `help:"With --server: first wait up to this long for a checkpoint that covers every entry the server holds (default: verify what is checkpointed now)."`
	State    string        `help:"File keeping the last verified checkpoint, its tree's right edge and the evidence checker's context, so the next run reads only new entries (default: one per origin and key under the user's state directory)."`
	Full     bool          `help:"Re-verify every entry from the first, not only those added since the state's checkpoint."`
	Shard    string        `help:"With --dir: the export is of this shard of a log sharded by time (sigild audit archive), under origin ORIGIN/SHARD." env:"SIGIL_AUDIT_SHARD"`
	TrustDom string        `name:"trust-domain" help:"Trust domain, for the default origin." env:"SIGIL_TRUST_DOMAIN" default:"sigil.test"`
	witnessFlags
}

func (c auditVerifyCmd) Run(ctx context.Context) error {
	if c.Server == "" && len(c.Dir) == 0 && c.Auditor == "" {
		return errors.New("give --auditor (and --server) or --dir")
	}
	keyPEM, err := os.ReadFile(c.Key)
	if err != nil {
		return err
	}
	v, err := c.verifier(keyPEM)
	if err != nil {
		return err
	}
	roots, err := pemutil.ReadCertificateBundle(c.EKRoots)
	if err != nil {
		return err
	}
	state, err := c.statePath(v)
	if err != nil {
		return err
	}
	checker := attest.NewLogChecker(roots)
	opts := audit.VerifyOptions{StatePath: state, OnEntry: checker.Entry, Context: checker, Full: c.Full}
	if err := c.require(&opts); err != nil {
		return err
	}
	ok := func() {
		fmt.Printf("evidence re-verified offline: %d enrollments, %d renewals, %d refusals that revoked\nlog verified: OK\n", checker.Enrollments, checker.Renewals, checker.Refusals)
	}
	return c.withSource(ctx, v, func(src audit.Source) error {
		report, err := audit.Verify(ctx, src, v, opts)
		if refused(err) {
			return notReader(err) // no verdict on the log
		}
		fmt.Print(report.String())
		if errors.Is(err, audit.ErrKeyChanged) {
			return keyChanged(v, state, err)
		}
		if err != nil {
			if c.Shard != "" && c.Shard != audit.UnshardedName {
				err = fmt.Errorf("%w (the renewals in a shard of devices enrolled in earlier shards verify only with those: give the archived shards in order, --dir OLDEST … --dir %s)", err, c.Dir[0])
			}
			return &exitError{code: 1, err: fmt.Errorf("audit log verification FAILED: %w", err)}
		}
		ok()
		return nil
	}, func(shards []audit.ShardInfo, tiles *client.TileSource) error {
		copts, err := c.chainOptions(shards, v, opts)
		if err != nil {
			return err
		}
		open := func(name string) (audit.Source, error) {
			if tiles == nil {
				return audit.DirSource(c.Dir[slices.IndexFunc(shards, func(sh audit.ShardInfo) bool { return sh.Name == name })]), nil
			}
			return tiles.Shard(name), nil
		}
		rep, err := audit.VerifyChain(ctx, shards, open, v, copts)
		if refused(err) {
			return notReader(err)
		}
		for i, r := range rep.Shards {
			if shards[i].Archived {
				fmt.Printf("shard %s: archived (not served); verified before: the state holds its final checkpoint of %d entries\n", shards[i].Name, r.Size)
				continue
			}
			fmt.Printf("shard %s:\n%s", shards[i].Name, r.String())
		}
		if errors.Is(err, audit.ErrKeyChanged) {
			return keyChanged(v, state, err)
		}
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("audit log verification FAILED: %w", err)}
		}
		fmt.Printf("shard chain verified: %d shards, each linked to the previous one's final checkpoint\n", len(shards))
		ok()
		return nil
	})
}

// exportedShards lists the exports of --dir as the shards of the log of
// --key, v, by the origin of each one's checkpoint (which VerifyChain
// then verifies): the base origin for the unsharded log, else base/NAME.
// All but the last are sealed.
func (c auditVerifyCmd) exportedShards(ctx context.Context, v *audit.Verifier) ([]audit.ShardInfo, error) {
	var shards []audit.ShardInfo
	for i, dir := range c.Dir {
		note, err := audit.DirSource(dir).Checkpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", dir, err)
		}
		cp, err := audit.PeekCheckpoint(note)
		if err != nil {
			return nil, fmt.Errorf("--dir %s: %w", dir, err)
		}
		name, ok := strings.CutPrefix(cp.Origin, v.Name()+"/")
		switch {
		case cp.Origin == v.Name():
			name = audit.UnshardedName
		case !ok:
			return nil, fmt.Errorf("--dir %s: an export of %s, not of a shard of %s", dir, cp.Origin, v.Name())
		}
		shards = append(shards, audit.ShardInfo{Name: name, Origin: cp.Origin, Sealed: i < len(c.Dir)-1})
	}
	return shards, nil
}

// chainOptions are opts for each shard of a sharded log: a state file per
// shard's origin (by default under the user's state directory, as for a
// log; with --state, FILE.NAME).
func (c auditVerifyCmd) chainOptions(shards []audit.ShardInfo, v *audit.Verifier, opts audit.VerifyOptions) (audit.ChainOptions, error) {
	paths := map[string]string{}
	for _, sh := range shards {
		sv, err := v.Renamed(sh.Origin)
		if err != nil {
			return audit.ChainOptions{}, err
		}
		path := c.State + "." + sh.Name
		if c.State == "" {
			if path, err = c.statePath(sv); err != nil {
				return audit.ChainOptions{}, err
			}
		}
		paths[sh.Origin] = path
	}
	return audit.ChainOptions{VerifyOptions: opts, StatePath: func(origin string) string { return paths[origin] }}, nil
}

// verifier is the log key of --key under --origin, by default the
// origin the key's log has (audit.Origin).
func (c auditVerifyCmd) verifier(keyPEM []byte) (*audit.Verifier, error) {
	pub, err := audit.ParsePublicKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	origin := c.Origin
	if origin == "" {
		if origin, err = audit.Origin(c.TrustDom, pub); err != nil {
			return nil, err
		}
	}
	if c.Shard != "" && c.Shard != audit.UnshardedName {
		if origin, err = audit.ShardOrigin(origin, c.Shard); err != nil {
			return nil, fmt.Errorf("--shard: %w", err)
		}
	}
	return audit.NewVerifier(origin, pub)
}

// withSource calls fn with the log to verify: the export of --dir, the
// server read as the --auditor workload, or anonymously (checkpoints
// only, on a server that keeps entries to its readers). A server is read
// as C2SP tlog-tiles if it serves them, else through its JSON API; a
// server whose log is sharded by time (it lists /log/shards) goes to
// chain, with the listing and the tiles reader. v is the log key of
// --key, which names the shards of exports.
func (c auditVerifyCmd) withSource(ctx context.Context, v *audit.Verifier, fn func(audit.Source) error, chain func([]audit.ShardInfo, *client.TileSource) error) error {
	var jsonAPI *client.AuditSource
	var tiles *client.TileSource
	switch {
	case len(c.Dir) == 1:
		return fn(audit.DirSource(c.Dir[0]))
	case len(c.Dir) > 1:
		shards, err := c.exportedShards(ctx, v)
		if err != nil {
			return err
		}
		fmt.Printf("verifying %d exports as the shards of one log, in the order given\n", len(shards))
		return chain(shards, nil)
	case c.Auditor != "":
		w, err := client.Open(ctx, c.Auditor)
		if err != nil {
			return fmt.Errorf("--auditor: %w", err)
		}
		defer w.Close()
		jsonAPI, tiles = w.AuditSource(c.Server), w.TileSource(c.Server)
	default:
		bundle, err := os.ReadFile(c.CABundle)
		if err != nil {
			return fmt.Errorf("--ca-bundle: %w", err)
		}
		if jsonAPI, err = client.NewAuditSource(c.Server, bundle); err != nil {
			return err
		}
		if tiles, err = client.NewTileSource(c.Server, bundle); err != nil {
			return err
		}
	}
	if err := c.awaitCovered(ctx, jsonAPI); err != nil {
		return err
	}
	if served, _ := tiles.Served(ctx); served {
		shards, err := tiles.Shards(ctx)
		var answer *client.ServerError
		switch {
		case errors.As(err, &answer) && answer.Status == http.StatusNotFound:
		case err != nil:
			return err
		default:
			fmt.Printf("reading the log as C2SP tlog-tiles, sharded by time: %d shards (/log/shards)\n", len(shards))
			return chain(shards, tiles)
		}
		fmt.Println("reading the log as C2SP tlog-tiles (/log/)")
		return fn(tiles)
	}
	fmt.Println("reading the log through the JSON API (/v1/audit/)")
	return fn(jsonAPI)
}

// awaitCovered waits up to --wait until the server's latest checkpoint
// covers every entry it holds.
func (c auditVerifyCmd) awaitCovered(ctx context.Context, src *client.AuditSource) error {
	if c.Wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.Wait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		covered, err := src.Covered(ctx)
		if covered && err == nil {
			covered, err = c.cosigned(ctx, src)
		}
		switch {
		case covered:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("--wait: no checkpoint covered every entry (with the cosignatures --witness requires) within %v", c.Wait)
		case refused(err):
			return notReader(err)
		case err != nil:
			return fmt.Errorf("--wait: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// statePath defaults to one file per log origin and key under the user's
// state directory, DIR/sigil/audit/ORIGIN-HASH/KEY-ID.state, so that
// successive runs detect forks and rollbacks and two logs never share a
// state. A state for the origin under another key is refused
// (keyChanged): the same name under a new key is not the log verified
// before.
func (c auditVerifyCmd) statePath(v *audit.Verifier) (string, error) {
	if c.State != "" {
		return c.State, nil
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --state and no home directory: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	sum := sha256.Sum256([]byte(v.Name()))
	dir := filepath.Join(base, "sigil", "audit", hex.EncodeToString(sum[:8]))
	path := filepath.Join(dir, fmt.Sprintf("%08x.state", v.KeyHash()))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	others, _ := filepath.Glob(filepath.Join(dir, "*.state"))
	if len(others) > 0 {
		return "", keyChanged(v, others[0], audit.ErrKeyChanged)
	}
	return path, nil
}

// keyChanged says what to do about a log known by its origin that now
// signs with another key.
func keyChanged(v *audit.Verifier, state string, err error) error {
	return &exitError{code: 1, err: fmt.Errorf("audit log %s: known origin under a new key: %s holds a checkpoint of this origin signed by another key, and --key is %s (%w). "+
		"If the log's operator replaced the log or its key (a new dev stack, a reset log), confirm the new key out of band, then verify it with a new --state FILE "+
		"(or remove %s); otherwise this is not the log you verified before: do not trust it", v.Name(), state, v, err, state)}
}

// refused reports whether err is sigild refusing to serve audit entries
// to this caller.
func refused(err error) bool {
	var answer *client.ServerError
	return errors.As(err, &answer) && (answer.Status == http.StatusUnauthorized || answer.Status == http.StatusForbidden)
}

// notReader says what to do when sigild does not serve entries to the
// caller (refused(err)); it is no verdict on the log.
func notReader(err error) error {
	var answer *client.ServerError
	errors.As(err, &answer)
	return &exitError{code: 1, err: fmt.Errorf("sigild does not serve audit entries to this caller (HTTP %d: %w): give --auditor with the state of an identity in its audit.readers, or verify an export with --dir", answer.Status, err)}
}
