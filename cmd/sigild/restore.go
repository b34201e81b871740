package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sigil-dev/sigil/internal/config"
	"github.com/sigil-dev/sigil/internal/daemon"
)

type restoreCmd struct {
	Acknowledge restoreAckCmd     `cmd:"" help:"Accept a database sigild refuses as restored or rolled back: new feed epoch, audited."`
	Reapply     restoreReapplyCmd `cmd:"" help:"Re-apply the revocations an audit export records and the restored database lost (idempotent)."`
}

type restoreAckCmd struct {
	Reason string `help:"Why the database was restored (recorded in the audit entry)." required:""`
}

func (c restoreAckCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return offline(ctx, cfg, log, func(o *daemon.Offline) error {
		ack, err := o.AcknowledgeRestore(ctx, c.Reason, time.Now())
		if err != nil {
			return err
		}
		fmt.Printf("acknowledged the restore: %v\ndatabase: %d audit entries; feed epoch %s -> %s\n"+
			"next: sigild restore reapply --from EXPORT, with an audit export newer than the restored copy\n",
			ack.Refused, ack.Size, ack.PreviousEpoch, ack.Epoch)
		return nil
	})
}

type restoreReapplyCmd struct {
	From string `help:"Audit export directory (sigild audit export) newer than the restored database." required:"" type:"existingdir"`
}

func (c restoreReapplyCmd) Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return offline(ctx, cfg, log, func(o *daemon.Offline) error {
		r, err := o.ReapplyRevocations(ctx, c.From)
		fmt.Printf("re-applied: %d certificates, %d tokens; already revoked: %d; not in the database: %d\n",
			len(r.Certificates), len(r.Tokens), r.Already, len(r.Missing))
		if len(r.Missing) > 0 {
			fmt.Printf("not in the database (certificates whose records the restore lost, tokens expired by now): %s\n", strings.Join(r.Missing, " "))
		}
		return err
	})
}

// offline runs fn on sigild's store and audit log, sigild stopped.
func offline(ctx context.Context, cfg *config.Config, log *slog.Logger, fn func(*daemon.Offline) error) error {
	h, err := daemon.OpenHSM(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer h.Close()
	o, err := daemon.OpenOffline(ctx, cfg, h, log)
	if err != nil {
		return err
	}
	defer o.Close()
	return fn(o)
}
