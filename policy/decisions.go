package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxCachedDecisions bounds a Set's decisionCache: the token service asks
// about three decisions per request (audience, each scope, all scopes), so
// this holds those of about a thousand distinct callers' requests.
const maxCachedDecisions = 4096

// decisionCache keeps the decisions a Set made about TokenRequests. A
// decision is a pure function of the request and the policy set: Cedar
// evaluation reads nothing but the request, the entities built from it and
// the policies (no clock, no store), and the entities are built from the
// request alone. The cache belongs to one Set, so a new policy set starts
// with an empty one and never sees another set's decisions; entries are
// keyed by the SHA-256 of an encoding of every field of the request (see
// [TokenRequest.appendKey]), so a request differing in any fact is decided
// afresh. Least recently used entries are evicted, bounding the cache
// under a flood of distinct requests. A nil *decisionCache decides every
// time.
type decisionCache struct {
	lru *lru.Cache[[sha256.Size]byte, Decision]
}

func newDecisionCache() *decisionCache {
	c, err := lru.New[[sha256.Size]byte, Decision](maxCachedDecisions)
	if err != nil {
		panic("policy: decision cache: " + err.Error()) // only for a size <= 0
	}
	return &decisionCache{lru: c}
}

// decide returns the decision about req, cached or made by decide. The
// decision returned is the caller's own: its slices are copies.
func (dc *decisionCache) decide(req TokenRequest, decide func() Decision) Decision {
	if dc == nil {
		return decide()
	}
	buf := keyBufs.Get().(*[]byte)
	key, ok := req.appendKey((*buf)[:0])
	*buf = key[:0]
	if !ok {
		keyBufs.Put(buf)
		return decide()
	}
	sum := sha256.Sum256(key)
	keyBufs.Put(buf)
	if d, ok := dc.lru.Get(sum); ok {
		return d.clone()
	}
	d := decide()
	dc.lru.Add(sum, d.clone())
	return d
}

// len is how many decisions are cached.
func (dc *decisionCache) len() int { return dc.lru.Len() }

// clone returns d with its own copies of its slices.
func (d Decision) clone() Decision {
	d.PolicyIDs = slices.Clone(d.PolicyIDs)
	d.Errors = slices.Clone(d.Errors)
	return d
}

// appendKey appends to b an encoding of every field of r, each prefixed
// with its length or count, so that two TokenRequests have the same key
// only if they are equal (a nil and an empty scope list aside, which
// build the same request). It is false when r's Caller has none (see
// [Caller.appendKey]).
func (r TokenRequest) appendKey(b []byte) ([]byte, bool) {
	b, ok := r.Caller.appendKey(b)
	if !ok {
		return b, false
	}
	b = appendField(b, r.Audience)
	b = appendList(b, r.Scopes)
	if r.Subject == nil {
		return append(b, 0), true
	}
	s := r.Subject
	b = append(b, 1)
	b = appendField(b, s.Issuer)
	b = appendField(b, s.Sub)
	b = appendList(b, s.Scopes)
	b = appendList(b, s.ActChain)
	return b, true
}

func appendList(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendField(b, s)
	}
	return b
}
