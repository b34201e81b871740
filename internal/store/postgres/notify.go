package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// NotifyRevocations LISTENs on the store's revocationChannel on a connection of its
// own (not the pool's: it is held for as long as ctx lasts), and passes
// the Seq each notification carries to the channel, keeping only the
// latest for a slow receiver. The LISTEN has taken effect when it
// returns: a revocation that commits after that is notified.
func (s *pgStore) NotifyRevocations(ctx context.Context) (<-chan uint64, error) {
	conn, err := pgx.ConnectConfig(ctx, s.w.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("store: notify revocations: connect: %w", err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: notify revocations: listen: %w", err)
	}
	ch := make(chan uint64, 1)
	go forward(ctx, conn, ch)
	return ch, nil
}

// forward passes conn's notifications to ch until ctx ends or conn fails,
// then closes both.
func forward(ctx context.Context, conn *pgx.Conn, ch chan uint64) {
	defer close(ch)
	defer conn.Close(context.WithoutCancel(ctx))
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return
		}
		seq, err := strconv.ParseUint(n.Payload, 10, 64)
		if err != nil {
			continue // not ours
		}
		latest(ch, seq)
	}
}

// latest puts seq on ch, a channel of capacity 1, replacing a value the
// receiver has not taken yet.
func latest(ch chan uint64, seq uint64) {
	for {
		select {
		case ch <- seq:
			return
		default:
		}
		select {
		case old := <-ch:
			seq = max(seq, old)
		default:
		}
	}
}
