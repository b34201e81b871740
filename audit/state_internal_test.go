package audit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
)

// FuzzParseState: whatever a state file holds, parseState either refuses
// it or returns a checkpoint signed by the key with a range that hashes to
// its root.
func FuzzParseState(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSigner("sigil.test/sigil-audit/fuzz", k)
	if err != nil {
		f.Fatal(err)
	}
	leaves := flatLeaves{}
	for i := range 5 {
		leaves = append(leaves, LeafHash([]byte{byte(i)})...)
	}
	rng, err := scan(f.Context(), leaves, 5, nil)
	if err != nil {
		f.Fatal(err)
	}
	note, err := s.Sign(Checkpoint{Origin: s.Name(), Size: 5, Hash: rootOf(rng)})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(stateFile{Checkpoint: string(note), Range: rng.Hashes(), Context: []byte(`{"devices":{}}`)})
	f.Add(good)
	f.Add(note)
	f.Add([]byte(`{"checkpoint":"","range":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data, s.Verifier())
		if err != nil {
			return
		}
		if st.rng != nil && !sameHash(rootOf(st.rng), st.cp.Hash) {
			t.Fatalf("accepted a range that does not hash to the checkpoint's root")
		}
	})
}
