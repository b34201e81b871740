package audit

import (
	"bytes"
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
)

// TileHeight is the level step of the nodes a NodeHashReader stores: the
// perfect subtrees of 2^8, 2^16, 2^24… leaves.
const TileHeight = 8

// NodeHashReader is an optional interface of a LeafHashReader (a Storage)
// that stores interior nodes of the tree, as tiled logs do: the hash of
// every complete perfect subtree of its leaves whose level is a positive
// multiple of TileHeight. With one, RootHash, InclusionProof and
// ConsistencyProof read, for each node they need, one range of at most
// 2^(TileHeight-1) node or leaf hashes: O(log size) hashes in all, where a
// bare LeafHashReader costs a read of every leaf.
//
// The stored nodes are a cache of the leaf hashes, not evidence: a wrong
// one makes proofs that do not verify, never a proof of something else.
// The Log checks every stored node against the leaf hashes it reads, at
// Init and as it integrates, before it signs a checkpoint covering the
// node; Verify never reads them.
type NodeHashReader interface {
	// NodeHashes returns the hashes of the perfect subtrees of 2^level
	// leaves with index in [start, end), that is of leaves
	// [start << level, end << level); level is a positive multiple of
	// TileHeight. Exactly end-start hashes of HashSize bytes, in index
	// order.
	NodeHashes(ctx context.Context, level uint, start, end uint64) ([][]byte, error)
}

// subtreeHashes returns the hashes of the perfect subtrees ids of the
// leaves of r, from its stored nodes.
func subtreeHashes(ctx context.Context, r LeafHashReader, n NodeHashReader, ids []compact.NodeID) ([][]byte, error) {
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		var err error
		if hashes[i], err = subtreeHash(ctx, r, n, id); err != nil {
			return nil, err
		}
	}
	return hashes, nil
}

// subtreeHash returns the hash of the perfect subtree id from its
// descendants at the highest stored level at or below it (the leaves below
// TileHeight): one read of at most 2^(TileHeight-1) hashes.
func subtreeHash(ctx context.Context, r LeafHashReader, n NodeHashReader, id compact.NodeID) ([]byte, error) {
	base := id.Level - id.Level%TileHeight
	start, end := id.Index<<(id.Level-base), (id.Index+1)<<(id.Level-base)
	var hashes [][]byte
	var err error
	if base == 0 {
		hashes, err = readLeafHashes(ctx, r, start, end)
	} else {
		hashes, err = readNodeHashes(ctx, n, base, start, end)
	}
	if err != nil {
		return nil, err
	}
	return perfectRoot(hashes), nil
}

// SubtreeHash returns the RFC 6962 hash of the perfect subtree whose
// bottom row is hashes: the leaf hashes of 2^k consecutive leaves, or the
// hashes of 2^k consecutive perfect subtrees of one level, starting at a
// multiple of 2^k. It is how a NodeHashReader's store computes the nodes
// it stores, and how RootHash and the proofs combine the ones they read.
// It does not change hashes.
func SubtreeHash(hashes [][]byte) ([]byte, error) {
	n := len(hashes)
	if n == 0 || n&(n-1) != 0 {
		return nil, fmt.Errorf("audit: subtree hash of %d hashes: want a power of two", n)
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return nil, fmt.Errorf("audit: subtree hash: hash %d is %d bytes, want %d", i, len(h), HashSize)
		}
	}
	return perfectRoot(hashes), nil
}

// perfectRoot returns the hash of the perfect tree whose bottom row is
// hashes, a power of two of them, without changing hashes.
func perfectRoot(hashes [][]byte) []byte {
	if len(hashes) == 1 {
		return hashes[0]
	}
	up := make([][]byte, len(hashes)/2)
	for i := range up {
		up[i] = hasher.HashChildren(hashes[2*i], hashes[2*i+1])
	}
	return perfectRoot(up)
}

// readNodeHashes reads nodes [start, end) at level and checks their count
// and size.
func readNodeHashes(ctx context.Context, n NodeHashReader, level uint, start, end uint64) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hashes, err := n.NodeHashes(ctx, level, start, end)
	if err != nil {
		return nil, fmt.Errorf("audit: read node hashes [%d, %d) at level %d: %w", start, end, level, err)
	}
	if uint64(len(hashes)) != end-start {
		return nil, fmt.Errorf("audit: read node hashes [%d, %d) at level %d: got %d", start, end, level, len(hashes))
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return nil, fmt.Errorf("audit: node hash %d at level %d is %d bytes, want %d", start+uint64(i), level, len(h), HashSize)
		}
	}
	return hashes, nil
}

// nodeCheck compares the nodes a NodeHashReader stores with the ones
// appending its leaf hashes to a compact range computes: visit collects
// them, and compares them with the stored ones when readChunk are pending;
// done compares the rest. Its zero value, for a Storage without nodes,
// checks nothing.
type nodeCheck struct {
	ctx     context.Context
	r       NodeHashReader
	pending map[uint]*pendingNodes // by level
	n       int                    // nodes pending
	err     error                  // of the first failed comparison
}

// pendingNodes are consecutive nodes of one level: appending leaves in
// order creates a level's nodes in index order.
type pendingNodes struct {
	start  uint64
	hashes [][]byte
}

// newNodeCheck returns a nodeCheck of s's stored nodes, if it has any.
func newNodeCheck(ctx context.Context, s LeafHashReader) *nodeCheck {
	r, _ := s.(NodeHashReader)
	return &nodeCheck{ctx: ctx, r: r, pending: map[uint]*pendingNodes{}}
}

// visitor returns the VisitFn for compact.Range.Append, nil when there is
// nothing to check.
func (c *nodeCheck) visitor() compact.VisitFn {
	if c.r == nil {
		return nil
	}
	return c.visit
}

func (c *nodeCheck) visit(id compact.NodeID, h []byte) {
	if id.Level == 0 || id.Level%TileHeight != 0 || c.err != nil {
		return
	}
	p := c.pending[id.Level]
	if p == nil {
		p = &pendingNodes{start: id.Index}
		c.pending[id.Level] = p
	}
	p.hashes = append(p.hashes, h)
	if c.n++; c.n >= readChunk {
		c.err = c.flush()
	}
}

// done compares the nodes still pending, and returns the first failure.
func (c *nodeCheck) done() error {
	if c.err != nil {
		return c.err
	}
	return c.flush()
}

// flush compares the pending nodes with the stored ones. A stored node
// that is not the hash of its leaves is ErrTampered.
func (c *nodeCheck) flush() error {
	for level, p := range c.pending {
		end := p.start + uint64(len(p.hashes))
		stored, err := readNodeHashes(c.ctx, c.r, level, p.start, end)
		if err != nil {
			return err
		}
		for i, h := range stored {
			if !bytes.Equal(h, p.hashes[i]) {
				return fmt.Errorf("%w: the stored hash of node %d at level %d is not the hash of its leaves", ErrTampered, p.start+uint64(i), level)
			}
		}
	}
	clear(c.pending)
	c.n = 0
	return nil
}
