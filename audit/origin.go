package audit

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// OriginPath is the path segment between a log's host and its ID in the
// origins Origin makes: HOST/sigil-audit/ID.
const OriginPath = "sigil-audit"

// logIDSize is how many bytes of the key's SHA-256 LogID keeps (16 hex
// digits: a collision between two logs' keys needs 2^32 logs).
const logIDSize = 8

// LogID returns the ID of the log whose checkpoints pub signs: the first
// 8 bytes, in hex, of SHA-256 of pub's SubjectPublicKeyInfo DER. Two logs
// with their own keys (two dev stacks, say) get two IDs; every replica of
// one log, sharing its HSM key, the same one.
func LogID(pub crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("audit: log id: %w", err)
	}
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:logIDSize]), nil
}

// Origin returns the default origin of the log on host (the trust domain)
// signed by pub: "HOST/sigil-audit/ID" with ID = LogID(pub). C2SP
// tlog-checkpoint asks that an origin name one log: deriving it from the
// key gives every log its own without storing anything, and an auditor
// holding the key (sigil audit verify --key) derives the same origin. A
// shard of the log (one log per period) appends "/" and its own name.
func Origin(host string, pub crypto.PublicKey) (string, error) {
	id, err := LogID(pub)
	if err != nil {
		return "", err
	}
	origin := strings.TrimSuffix(host, "/") + "/" + OriginPath + "/" + id
	if !validName(origin) {
		return "", fmt.Errorf("audit: origin %q: want a non-empty line without spaces or '+'", origin)
	}
	return origin, nil
}

// LegacyOrigin is the origin every log had before Origin: "HOST/sigil-audit",
// the same for every log of a trust domain whatever its key. A log whose
// checkpoints already use it keeps it (see internal/daemon).
func LegacyOrigin(host string) string { return strings.TrimSuffix(host, "/") + "/" + OriginPath }
