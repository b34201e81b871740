package ca

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func FuzzParseEvidence(f *testing.F) {
	d := sha256.Sum256([]byte("d"))
	ext, err := Evidence{Digest: d[:], EKHash: d[:], PolicyVersion: "sha256:00"}.extension()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ext.Value)
	f.Add([]byte{0x30, 0x00})
	f.Add(append(bytes.Clone(ext.Value), 0))
	f.Fuzz(func(t *testing.T, der []byte) {
		e, err := parseEvidence(der)
		if err != nil {
			return
		}
		again, err := e.extension()
		if err != nil {
			t.Fatalf("parsed evidence does not encode: %v", err)
		}
		if _, err := parseEvidence(again.Value); err != nil {
			t.Fatalf("re-encoded evidence does not parse: %v", err)
		}
	})
}
