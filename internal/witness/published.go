package witness

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/sigil-dev/sigil/audit"
)

// Checkpointer is the log's latest signed checkpoint (audit.Log).
type Checkpointer interface {
	Checkpoint(ctx context.Context) ([]byte, error)
}

// Cosignatures reads the stored cosignatures (internal/store's AuditLog).
type Cosignatures interface {
	Cosignatures(ctx context.Context, size uint64) ([][]byte, error)
}

// PublishedTTL is how long Published reuses the cosignatures it read for
// the latest checkpoint before reading them again: a cosignature stored by
// the replica that submits shows on every replica within it.
const PublishedTTL = 250 * time.Millisecond

// Published is the log's latest checkpoint as it is served: the signed
// note followed by the witnesses' cosignature lines stored for it. It
// stays live when witnesses are not: a checkpoint not cosigned yet is
// served with the cosignatures it has, none at first.
type Published struct {
	log    Checkpointer
	store  Cosignatures
	shards Shards // nil: a log not sharded

	mu    sync.Mutex
	base  []byte // the log's note the cache is of
	note  []byte // base with its cosignatures
	until time.Time
}

// NewPublished returns the published view of log, with the cosignatures
// in st.
func NewPublished(log Checkpointer, st Cosignatures) *Published {
	return &Published{log: log, store: st}
}

// NewShardedPublished returns the published view of log, sharded by time:
// each checkpoint with the cosignatures stored for its shard, which shards
// finds by the checkpoint's origin.
func NewShardedPublished(log Checkpointer, shards Shards) *Published {
	return &Published{log: log, shards: shards}
}

// Cosign returns note, a checkpoint of the log (of any of its shards),
// with the cosignatures stored for it, up to audit.MaxCheckpointSize.
func (p *Published) Cosign(ctx context.Context, note []byte) ([]byte, error) {
	cp, err := audit.PeekCheckpoint(note)
	if err != nil {
		return nil, err
	}
	st := p.store
	if p.shards != nil {
		sh, err := p.shards.ShardOf(ctx, cp.Origin)
		if err != nil {
			return nil, err
		}
		st = sh.Store
	}
	lines, err := st.Cosignatures(ctx, cp.Size)
	if err != nil {
		return nil, err
	}
	out := bytes.Clone(note)
	for _, l := range lines {
		if len(out)+len(l) > audit.MaxCheckpointSize {
			break
		}
		out = append(out, l...)
	}
	return out, nil
}

// Checkpoint returns the latest checkpoint note with its cosignatures. A
// failure to read the cosignatures serves the note without them.
func (p *Published) Checkpoint(ctx context.Context) ([]byte, error) {
	note, err := p.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if bytes.Equal(p.base, note) && time.Now().Before(p.until) {
		defer p.mu.Unlock()
		return bytes.Clone(p.note), nil
	}
	p.mu.Unlock()
	if _, err := audit.PeekCheckpoint(note); err != nil {
		return nil, err
	}
	out, err := p.Cosign(ctx, note)
	if err != nil {
		return note, nil
	}
	p.mu.Lock()
	p.base, p.note, p.until = note, out, time.Now().Add(PublishedTTL)
	p.mu.Unlock()
	return bytes.Clone(out), nil
}
