package daemon

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/store"
)

// checkpointReader reads the latest stored checkpoint note (a store.Store).
type checkpointReader interface {
	LatestCheckpoint(ctx context.Context) ([]byte, error)
}

// AuditOrigin returns the origin of the audit log signed by pub: audit.origin
// if configured; else the legacy TRUST_DOMAIN/sigil-audit if the stored
// checkpoints already use it and verify under pub (a log keeps its name);
// else audit.Origin(TRUST_DOMAIN, pub), TRUST_DOMAIN/sigil-audit/ID with
// the ID derived from the key, so that every log (every dev stack) has its
// own origin and auditors keep their state apart. `sigild init` prints it;
// `sigil audit verify --key` derives the same one.
func AuditOrigin(ctx context.Context, cfg *config.Config, st checkpointReader, pub crypto.PublicKey, log *slog.Logger) (string, error) {
	if cfg.Audit.Origin != "" {
		return cfg.Audit.Origin, nil
	}
	if sh, ok := st.(store.AuditReader); ok {
		// A sharded log keeps the origin its shards were named under.
		rows, err := sh.AuditShards(ctx)
		if err != nil {
			return "", fmt.Errorf("daemon: audit origin: %w", err)
		}
		if len(rows) > 0 {
			return strings.TrimSuffix(rows[0].Origin, "/"+rows[0].Name), nil
		}
	}
	legacy := audit.LegacyOrigin(cfg.TrustDomain)
	if keeps, err := signedAs(ctx, st, legacy, pub); err != nil || keeps {
		if keeps && log != nil {
			log.WarnContext(ctx, "the audit log keeps its legacy origin; set audit.origin to it to make that explicit", "origin", legacy)
		}
		return legacy, err
	}
	return audit.Origin(cfg.TrustDomain, pub)
}

// signedAs reports whether the latest stored checkpoint is origin's,
// signed by pub.
func signedAs(ctx context.Context, st checkpointReader, origin string, pub crypto.PublicKey) (bool, error) {
	note, err := st.LatestCheckpoint(ctx)
	if err != nil {
		return false, fmt.Errorf("daemon: audit origin: read the latest checkpoint: %w", err)
	}
	if len(note) == 0 {
		return false, nil
	}
	if cp, err := audit.PeekCheckpoint(note); err != nil || cp.Origin != origin {
		return false, nil
	}
	v, err := audit.NewVerifier(origin, pub)
	if err != nil {
		return false, err
	}
	_, err = audit.OpenCheckpoint(note, v)
	return err == nil, nil
}
