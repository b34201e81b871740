package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/internal/store/backend"
)

// ReappliedPrefix starts the revocation reason of a revocation that
// ReapplyRevocations brought back: the original reason follows.
const ReappliedPrefix = "re-applied after a restore: "

// Offline is sigild's store and audit log, checked as New checks them
// (Init: every entry against its leaf hash and the latest checkpoint), for
// the restore commands, which run while sigild is stopped.
type Offline struct {
	d *Daemon
}

// OpenOffline opens the store and the audit log for the restore commands;
// a tampered log is refused as New refuses it.
func OpenOffline(ctx context.Context, cfg *config.Config, h *hsm.HSM, log *slog.Logger) (*Offline, error) {
	d := &Daemon{cfg: cfg, log: log, hsm: h}
	var err error
	if d.pki, err = Load(ctx, cfg, h); err != nil {
		return nil, err
	}
	if d.store, err = backend.Open(ctx, cfg.Store); err != nil {
		return nil, err
	}
	if d.audit, err = d.openAudit(ctx, nil); err != nil {
		d.store.Close()
		return nil, err
	}
	return &Offline{d: d}, nil
}

// Close closes the store (not the HSM, which the caller opened).
func (o *Offline) Close() { o.d.store.Close() }

// Acknowledgement is what AcknowledgeRestore did.
type Acknowledgement struct {
	Refused       error  // why sigild refused the database
	PreviousEpoch string // the database's epoch before
	Epoch         string // its new epoch
	Size          uint64 // audit entries of the restored database, before the acknowledgement's
}

// AcknowledgeRestore accepts a database that sigild refuses as restored
// (ErrRestored): in one transaction it gives the database a new epoch, so
// that feed subscribers resynchronise, and appends a restore.acknowledged
// entry with reason, the anchor's checkpoint and the old and new epochs;
// then it signs a checkpoint and anchors it. A database sigild does not
// refuse is an error: there is nothing to acknowledge.
func (o *Offline) AcknowledgeRestore(ctx context.Context, reason string, now time.Time) (Acknowledgement, error) {
	if reason == "" {
		return Acknowledgement{}, errors.New("daemon: acknowledge restore: a reason is required")
	}
	d := o.d
	s, err := checkAnchor(ctx, d.store, d.cfg.Audit.Anchor, d.checkpoints)
	if err != nil {
		return Acknowledgement{}, err
	}
	if s.Restored == nil {
		return Acknowledgement{}, errors.New("daemon: acknowledge restore: the database is not older than the anchor; nothing to acknowledge")
	}
	ack := Acknowledgement{Refused: s.Restored, PreviousEpoch: s.Epoch, Size: s.Size}
	err = d.store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if ack.Epoch, err = tx.NewEpoch(ctx); err != nil {
			return err
		}
		head, err := tx.LatestRevocationSeq(ctx)
		if err != nil {
			return err
		}
		payload := audit.Restore{Reason: reason, Size: s.Size, PreviousEpoch: s.Epoch, Epoch: ack.Epoch, FeedHead: head}
		if s.Anchor != nil {
			payload.Anchor = s.Anchor.Checkpoint
		}
		e, err := store.NewAuditEntry(audit.RestoreAcknowledged, now, payload, "epoch:"+ack.Epoch)
		if err != nil {
			return err
		}
		return store.AppendAuditEntries(ctx, tx, e)
	})
	if err != nil {
		return Acknowledgement{}, fmt.Errorf("daemon: acknowledge restore: %w", err)
	}
	d.epoch = ack.Epoch
	return ack, d.anchorNow(ctx)
}

// anchorNow signs a checkpoint of every entry and writes it to the anchor.
func (d *Daemon) anchorNow(ctx context.Context) error {
	if err := d.audit.Integrate(ctx); err != nil {
		return err
	}
	note, err := d.audit.Checkpoint(ctx)
	if err != nil {
		return err
	}
	return writeAnchor(d.cfg.Audit.Anchor, anchor{Epoch: d.epoch, Checkpoint: string(note)})
}

// Reapplied is what ReapplyRevocations did.
type Reapplied struct {
	Certificates []string // serials revoked again
	Tokens       []string // jtis revoked again, with those revoked with them
	Missing      []string // "serial:…" and "jti:…" the database does not hold
	Already      int      // revocations the database already had
}

// revocation is a revocation read from an audit export; token is the
// revoked token's audit record, for a token.
type revocation struct {
	serial, jti, reason string
	at                  time.Time
	token               audit.Token
}

// ReapplyRevocations re-applies every certificate and token revocation
// that the audit export in dir records, in log order, to the database,
// each with its audit entries (the stored reason is ReappliedPrefix and
// the original reason) and feed events, as the original revocation had.
// It verifies the export against the audit key first and applies nothing
// from an export that does not verify. It is idempotent: what the database
// has revoked is left as it is. Run it after AcknowledgeRestore, with an
// export taken before the restore (`sigild audit export`, or an auditor's
// copy). A token issued after the restored copy was taken, so unknown to
// the database, is stored again from its token.revoked entry (bound to
// the same certificate, under its parent if that is stored and
// unrevoked) and revoked, so that the feed tells verifiers again; one
// expired by now needs nothing. Revocations of certificates the database
// does not hold are listed as missing: their records are gone with the
// restore, and the tokens they revoked have entries of their own.
func (o *Offline) ReapplyRevocations(ctx context.Context, dir string) (Reapplied, error) {
	revs, err := exportRevocations(ctx, dir, o.d.checkpoints)
	if err != nil {
		return Reapplied{}, err
	}
	var r Reapplied
	for _, rev := range revs {
		if err := o.reapply(ctx, rev, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// exportRevocations verifies the export in dir and returns its
// revocations in log order.
func exportRevocations(ctx context.Context, dir string, v *audit.Verifier) ([]revocation, error) {
	var revs []revocation
	collect := func(_ uint64, e audit.Entry) error {
		if e.Kind != audit.CertificateRevoked && e.Kind != audit.TokenRevoked {
			return nil
		}
		p, err := e.Payload()
		if err != nil {
			return err
		}
		switch p := p.(type) {
		case *audit.Certificate:
			revs = append(revs, revocation{serial: p.Serial, reason: p.Reason, at: e.Time})
		case *audit.Token:
			revs = append(revs, revocation{jti: p.JTI, reason: p.Reason, at: e.Time, token: *p})
		}
		return nil
	}
	if _, err := audit.Verify(ctx, audit.DirSource(dir), v, audit.VerifyOptions{OnEntry: collect}); err != nil {
		return nil, fmt.Errorf("daemon: reapply: the export %s does not verify: %w", dir, err)
	}
	return revs, nil
}

// reapply re-applies one revocation and records what it did in r.
func (o *Offline) reapply(ctx context.Context, rev revocation, r *Reapplied) error {
	st := o.d.store
	already := false
	err := st.Tx(ctx, func(tx store.Tx) error {
		revoked, err := revokeAgain(ctx, tx, rev)
		if err != nil {
			return err
		}
		if already = len(revoked.Certificates) == 0 && len(revoked.Tokens) == 0; already {
			return nil
		}
		var entries []store.AuditEntry
		for _, serial := range revoked.Certificates {
			e, err := store.NewAuditEntry(audit.CertificateRevoked, rev.at, audit.Certificate{Serial: serial, Reason: ReappliedPrefix + rev.reason})
			if err != nil {
				return err
			}
			entries = append(entries, e)
			r.Certificates = append(r.Certificates, serial)
		}
		tokens, err := store.RevokedTokenEntries(ctx, tx, revoked.Tokens, rev.at)
		if err != nil {
			return err
		}
		r.Tokens = append(r.Tokens, revoked.Tokens...)
		return store.AppendAuditEntries(ctx, tx, append(entries, tokens...)...)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.Missing = append(r.Missing, rev.key())
		return nil
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrCertificateRevoked):
		// Revoked already, or a lost token bound to a certificate the
		// database has revoked, which refuses it everywhere.
		r.Already++
		return nil
	case err != nil:
		return fmt.Errorf("daemon: reapply %s: %w", rev.key(), err)
	case already:
		r.Already++
	}
	return nil
}

func (rev revocation) key() string {
	if rev.serial != "" {
		return "serial:" + rev.serial
	}
	return "jti:" + rev.jti
}

// revokeAgain revokes rev's certificate (and its tokens) or token (and its
// subtree) in tx, with ReappliedPrefix before the reason. A certificate
// revoked already is ErrConflict, a token revoked already nothing.
func revokeAgain(ctx context.Context, tx store.Tx, rev revocation) (store.Revoked, error) {
	reason := ReappliedPrefix + rev.reason
	if rev.serial != "" {
		return tx.RevokeCertificate(ctx, rev.serial, reason, rev.at)
	}
	if err := restoreLost(ctx, tx, rev); err != nil {
		return store.Revoked{}, err
	}
	jtis, err := tx.RevokeToken(ctx, rev.jti, reason, rev.at)
	return store.Revoked{Tokens: jtis}, err
}

// restoreLost stores the record of rev's token from its audit record if
// the database does not hold it and it has not expired; an expired one
// is left unknown (ErrNotFound, listed missing), as every verifier
// refuses it anyway.
func restoreLost(ctx context.Context, tx store.Tx, rev revocation) error {
	_, err := tx.Token(ctx, rev.jti)
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	t := rev.token
	if !t.Exp.After(time.Now()) || !t.Exp.After(rev.at) {
		return err
	}
	rec := store.Token{JTI: t.JTI, Sub: t.Sub, Aud: t.Aud, Scope: t.Scope, IssuedAt: rev.at, ExpiresAt: t.Exp}
	if strings.HasPrefix(t.JTI, store.ExternalPrefix) {
		rec.Kind = store.TokenExternal
		return tx.InsertExternalToken(ctx, rec)
	}
	rec.Kind, rec.CNF, rec.Act, rec.ClientID = store.TokenJWT, t.CNF, t.Act, t.Sub
	if len(t.Act) > 0 {
		rec.ClientID = t.Act[0] // the caller of an exchange is the current actor
	}
	if p, err := tx.Token(ctx, t.ParentJTI); err == nil && p.RevokedAt == nil && !t.Exp.After(p.ExpiresAt) {
		rec.ParentJTI = t.ParentJTI
	}
	return tx.InsertToken(ctx, rec)
}
