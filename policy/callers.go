package policy

import (
	"encoding/binary"
	"sync"

	cedar "github.com/cedar-policy/cedar-go"
)

// maxCachedCallers bounds a Set's callerCache: about one entry per client
// certificate in use.
const maxCachedCallers = 4096

// callerCache keeps the Cedar entities of the callers a Set decided for:
// building a caller's device (PCRs and event digests, formatted as sets)
// costs more than the decision, and the token service asks a few for each
// request of the same caller. Entries are keyed by everything a Caller
// holds, so an entry only ever stands for the very facts it was built
// from. A nil *callerCache builds every time.
type callerCache struct {
	mu sync.Mutex
	m  map[string]callerEntities
}

type callerEntities struct{ workload, device cedar.Entity }

func newCallerCache() *callerCache {
	return &callerCache{m: map[string]callerEntities{}}
}

// keyBufs are the buffers Caller keys are built in: a key is about 2 KiB
// (a device's PCRs and event digests), built at every decision, and only
// kept when a new entry is stored.
var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// entities returns c.entities(), built or cached. Failures are not cached.
func (cc *callerCache) entities(c Caller) (cedar.Entity, cedar.Entity, error) {
	if cc == nil {
		return c.entities()
	}
	buf := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(buf)
	key, ok := c.appendKey((*buf)[:0])
	*buf = key[:0]
	if !ok {
		return c.entities()
	}
	cc.mu.Lock()
	e, ok := cc.m[string(key)] // no copy of key for a lookup
	cc.mu.Unlock()
	if ok {
		return e.workload, e.device, nil
	}
	workload, device, err := c.entities()
	if err != nil {
		return cedar.Entity{}, cedar.Entity{}, err
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.m) >= maxCachedCallers {
		for k := range cc.m { // an arbitrary one
			delete(cc.m, k)
			break
		}
	}
	cc.m[string(key)] = callerEntities{workload, device}
	return workload, device, nil
}

// appendKey appends to b an encoding of every field of c, each prefixed
// with its length, so that two Callers have the same key only if they are
// equal. A caller with a PCR index out of range, which is invalid, has
// none (false).
func (c Caller) appendKey(b []byte) ([]byte, bool) {
	d := c.Device
	b = appendField(b, c.SPIFFEID)
	b = appendField(b, c.PolicyVersion)
	b = appendField(b, d.EKHash)
	b = appendField(b, d.EKIssuer)
	b = appendField(b, d.AKHash)
	b = binary.AppendUvarint(b, uint64(len(d.PCRs)))
	pcrs := 0
	for idx := range maxPCR + 1 {
		if v, ok := d.PCRs[idx]; ok {
			b = appendField(append(b, byte(idx)), v)
			pcrs++
		}
	}
	if pcrs != len(d.PCRs) {
		return b, false
	}
	b = binary.AppendUvarint(b, uint64(len(d.EventDigests)))
	for _, e := range d.EventDigests {
		b = appendField(b, e)
	}
	if d.SecureBoot {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b, true
}

func appendField[T string | []byte](b []byte, v T) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}
