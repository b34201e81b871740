package store

import (
	"bytes"
	"context"
	"fmt"
	"unicode/utf8"
)

// AuditTileHeight: a store keeps the hash of every complete perfect
// subtree of the audit log's Merkle tree whose level (log2 of the entries
// it covers) is a positive multiple of AuditTileHeight, so that a proof
// reads at most 2^AuditTileHeight hashes per node. It is the audit
// package's TileHeight.
const AuditTileHeight = 8

// CheckAuditNodeLevel checks that level is one whose nodes the store keeps
// (AuditNodeHashes): a positive multiple of AuditTileHeight below 64.
func CheckAuditNodeLevel(level uint) error {
	if level == 0 || level%AuditTileHeight != 0 || level >= 64 {
		return fmt.Errorf("want a positive multiple of %d below 64", AuditTileHeight)
	}
	return nil
}

// AuditNode names a perfect subtree of the audit log's Merkle tree: the
// 2^Level entries [Index << Level, (Index+1) << Level).
type AuditNode struct {
	Level uint
	Index uint64
}

// Children returns the range [start, end) of the node's descendants one
// stored level down, AuditTileHeight levels below it: leaf hashes for a
// node at AuditTileHeight, else nodes at Level-AuditTileHeight.
func (n AuditNode) Children() (start, end uint64) {
	return n.Index << AuditTileHeight, (n.Index + 1) << AuditTileHeight
}

// CompletedAuditNodes returns the stored nodes that the entry which makes
// the log size entries long completes, lowest level first: one in 256
// entries completes a node at level 8, one in 65536 also one at level 16…
// AppendAudit stores them in the entry's transaction, each computed from
// its Children, which are stored by then.
func CompletedAuditNodes(size uint64) []AuditNode {
	var nodes []AuditNode
	for level := uint(AuditTileHeight); level < 64 && size > 0 && size%(1<<level) == 0; level += AuditTileHeight {
		nodes = append(nodes, AuditNode{Level: level, Index: size>>level - 1})
	}
	return nodes
}

// AuditLog is the audit log of a Store or a Tx, with the method set of
// the audit package's Storage and its optional CheckpointLister,
// NodeHashReader and Finder.
type AuditLog struct {
	rw interface {
		AuditReader
		AuditWriter
	}
}

// AuditStorage returns the audit log of st, a Store or a Tx.
func AuditStorage(st interface {
	AuditReader
	AuditWriter
}) AuditLog {
	return AuditLog{st}
}

// Size is AuditSize.
func (l AuditLog) Size(ctx context.Context) (uint64, error) { return l.rw.AuditSize(ctx) }

// LeafHashes is AuditLeafHashes.
func (l AuditLog) LeafHashes(ctx context.Context, start, end uint64) ([][]byte, error) {
	return l.rw.AuditLeafHashes(ctx, start, end)
}

// NodeHashes is AuditNodeHashes.
func (l AuditLog) NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error) {
	return l.rw.AuditNodeHashes(ctx, level, start, end)
}

// Entries is AuditEntries.
func (l AuditLog) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	return l.rw.AuditEntries(ctx, start, end)
}

// LatestCheckpoint is the Store's LatestCheckpoint.
func (l AuditLog) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	return l.rw.LatestCheckpoint(ctx)
}

// PutCheckpoint is the Store's PutCheckpoint.
func (l AuditLog) PutCheckpoint(ctx context.Context, size uint64, note []byte) error {
	return l.rw.PutCheckpoint(ctx, size, note)
}

// Checkpoints returns the notes of the stored checkpoints, smallest size
// first.
func (l AuditLog) Checkpoints(ctx context.Context) ([][]byte, error) {
	cs, err := l.rw.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	return notes(cs), nil
}

// notes are the notes of checkpoints cs, in their order.
func notes(cs []Checkpoint) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Note
	}
	return out
}

// MaxCosignatureLine bounds one stored signature line: a name of at most a
// few hundred bytes and the base64 of a key ID, a timestamp and an Ed25519
// or ML-DSA-44 signature (2420 bytes).
const MaxCosignatureLine = 4 << 10

// CheckSignatureLine checks that line is one signed-note signature line:
// "— " (an em dash and a space), a name, a space, base64, a newline, at
// most MaxCosignatureLine bytes, valid UTF-8. Backends refuse anything
// else in AddCosignature, so that a stored note with its cosignatures
// appended is still a note.
func CheckSignatureLine(line []byte) error {
	rest, ok := bytes.CutPrefix(line, []byte("— "))
	switch {
	case len(line) > MaxCosignatureLine:
		return fmt.Errorf("signature line of %d bytes, at most %d", len(line), MaxCosignatureLine)
	case !ok || !utf8.Valid(line) || !bytes.HasSuffix(rest, []byte("\n")):
		return fmt.Errorf("not a signature line %q", line)
	}
	name, sig, ok := bytes.Cut(bytes.TrimSuffix(rest, []byte("\n")), []byte(" "))
	if !ok || len(name) == 0 || len(sig) == 0 || bytes.ContainsAny(sig, " \n\r\t") || bytes.ContainsAny(name, "\n\r\t+") {
		return fmt.Errorf("not a signature line %q", line)
	}
	return nil
}

// Cosignatures is the Store's Cosignatures.
func (l AuditLog) Cosignatures(ctx context.Context, size uint64) ([][]byte, error) {
	return l.rw.Cosignatures(ctx, size)
}

// AddCosignature is the Store's AddCosignature.
func (l AuditLog) AddCosignature(ctx context.Context, size uint64, witness string, line []byte) error {
	return l.rw.AddCosignature(ctx, size, witness, line)
}
