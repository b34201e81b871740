// Package hsm keeps sigil's signing keys in a PKCS#11 token and hands them
// out as crypto.Signer values. Nothing else in sigil knows about PKCS#11.
//
// # Opening a token
//
// A token is named by an RFC 7512 URI (see URI and ParseURI):
//
//	h, err := hsm.Open(ctx,
//		"pkcs11:token=sigil?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sigil/hsm.pin",
//		hsm.WithPINEnv("SIGIL_HSM_PIN"), hsm.WithLogger(log), hsm.WithMetrics(reg))
//
// The user PIN comes from the file named by pin-source or from the
// environment variable named by WithPINEnv, exactly one of them. A PIN
// written in the URI (pin-value) is refused. The PIN is kept in memory for
// reconnects, and never logged nor put in an error.
//
// # Keys
//
// Keys have a name and versions; the token label of a version is
// "<name>.v<version>" ("jwt.v1", "jwt.v2"). Generate makes version 1, Rotate
// adds the next version beside the old ones (same algorithm), Find loads the
// latest ("jwt") or a given version ("jwt.v1"), and List shows all versions.
// ES256 (P-256), ES384 (P-384) and PS256 (RSA 3072, PSS) are supported. A
// key's id (kid) is the RFC 7638 JWK SHA-256 thumbprint of its public key:
// stable for the life of the key, whatever process opens it.
//
// # Failures and recovery
//
// Errors are *Error values; errors.Is matches the sentinels ErrUnavailable,
// ErrBadPIN, ErrTokenNotFound, ErrKeyNotFound, ErrKeyExists and
// ErrInvalidURI, whose docs say what the caller should do. Every call that
// reaches the token is bounded: by its context, or for Key.Sign and Healthy
// by WithTimeout, and waits for a free session are bounded by WithSessions.
// PKCS#11 calls cannot be interrupted, so signing calls run on a fixed set
// of worker goroutines (one per session) and the caller stops waiting at its
// deadline; a hung call keeps its worker until it returns, so at most that
// many calls can hang at once.
//
// crypto11 does not recover from a lost token or session. This package does:
// when an operation fails with a PKCS#11 code that means the sessions are
// gone (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_ERROR,
// CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN,
// CKR_CRYPTOKI_NOT_INITIALIZED, CKR_GENERAL_ERROR, ...), the handle drops its
// crypto11 context (closing it in the background) and reports
// ErrUnavailable. The next call starts one reconnect attempt — close, then
// configure and log in again; callers wait for it within their own bound.
// Failed attempts back off exponentially (WithReconnectBackoff); a
// rejected PIN stops the attempts, since retrying it would lock the token.
// There is no background goroutine: callers, and a readiness probe calling
// Healthy, drive recovery. Keys handed out before a loss keep working after
// it: each Key remembers which context it was resolved on and looks itself
// up again, by label and CKA_ID, on the new one.
//
// The PKCS#11 module is process-global and crypto11 shares it between
// contexts with the same module path: it is finalised and initialised again,
// which is what makes p11-kit-client and most network HSM clients reconnect,
// only when no other context in the process uses that path.
//
// # Metrics and logs
//
// WithMetrics registers sigil_hsm_sign_operations_total{alg,result},
// sigil_hsm_sign_duration_seconds{alg}, sigil_hsm_reconnects_total{result}
// and sigil_hsm_up. Logs go to the WithLogger logger: losses, reconnects and
// key creation, with labels and key ids.
package hsm
