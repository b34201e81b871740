package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
