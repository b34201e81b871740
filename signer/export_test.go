package signer

// SetSignatureCacheSize replaces v's cache of verified signatures with an
// empty one of n entries, and returns a function telling how many it holds.
func SetSignatureCacheSize(v *Verifier, n int) func() int {
	v.sigs = newSigCache(n)
	return v.sigs.len
}
