package ca_test

import (
	"crypto"
	"testing"
)

// signers returns the root and issuing CA keys for a test.
func signers(t *testing.T) (root, issuer crypto.Signer) {
	t.Helper()
	return newKey(t), newKey(t)
}
