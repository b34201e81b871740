package hsm

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/thales-e-security/pool"
)

// Sentinel errors. Each is exported because callers act on it; match them with
// errors.Is. Operations return them wrapped in an *Error that carries the
// underlying cause.
var (
	// ErrUnavailable means the module, the token or the path to it is gone,
	// broken or saturated (lost session, device error, token removed, no
	// session free within the wait bound, operation timeout). The HSM handle
	// reconnects by itself, with backoff, on later calls: fail the request
	// with 503 Service Unavailable (Retry-After from Error.RetryAfter when
	// set) and try again later. Do not reopen the HSM and do not restart.
	ErrUnavailable = errors.New("hsm: unavailable")

	// ErrBadPIN means the token rejected the PIN (incorrect, invalid, expired
	// or locked). Retrying with the same PIN walks the token towards lockout,
	// so the handle stops reconnecting after it: fix the PIN source and
	// restart the service.
	ErrBadPIN = errors.New("hsm: PIN rejected")

	// ErrTokenNotFound means no token with the URI's label or serial is
	// present in the module: check the token= or serial= attribute and that
	// the token has been initialised.
	ErrTokenNotFound = errors.New("hsm: token not found")

	// ErrKeyNotFound means the token holds no key by that name or version, or
	// the key behind a Key was replaced by a different one. Create it
	// (Generate, `sigild init`) or fix the configured name.
	ErrKeyNotFound = errors.New("hsm: key not found")

	// ErrKeyExists means Generate found a key by that name already. Use Find
	// to load it, or Rotate to add a new version beside it.
	ErrKeyExists = errors.New("hsm: key already exists")

	// ErrInvalidURI means a pkcs11: URI was rejected by ParseURI: fix the
	// configuration; the error names the attribute at fault.
	ErrInvalidURI = errors.New("hsm: invalid pkcs11 URI")
)

// errClosed is returned after Close; callers never need to act on it.
var errClosed = errors.New("handle closed")

// Error describes a failed HSM operation. It never contains a PIN.
type Error struct {
	Op   string // operation: "open", "sign", "find", "list", "generate", "rotate", "health"
	Key  string // key label or name, when the operation concerns one
	Kind error  // one of the sentinel errors, or nil
	Err  error  // the underlying cause, such as a pkcs11.Error; may be nil

	// RetryAfter is, for ErrUnavailable, how long until the next reconnect
	// attempt is allowed; zero means "now".
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hsm: " + e.Op)
	if e.Key != "" {
		b.WriteString(" " + quote(e.Key))
	}
	if e.Kind != nil {
		b.WriteString(": " + strings.TrimPrefix(e.Kind.Error(), "hsm: "))
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see both the kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Kind, e.Err} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func quote(s string) string { return `"` + s + `"` }

// lostCodes are PKCS#11 results after which the sessions and object handles
// of a crypto11 context cannot be trusted: the context must be rebuilt.
var lostCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_SESSION_HANDLE_INVALID:   true,
	pkcs11.CKR_SESSION_CLOSED:           true,
	pkcs11.CKR_SESSION_COUNT:            true,
	pkcs11.CKR_DEVICE_ERROR:             true,
	pkcs11.CKR_DEVICE_REMOVED:           true,
	pkcs11.CKR_DEVICE_MEMORY:            true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
	pkcs11.CKR_SLOT_ID_INVALID:          true,
	pkcs11.CKR_GENERAL_ERROR:            true,
}

var pinCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_PIN_INCORRECT: true,
	pkcs11.CKR_PIN_INVALID:   true,
	pkcs11.CKR_PIN_LEN_RANGE: true,
	pkcs11.CKR_PIN_EXPIRED:   true,
	pkcs11.CKR_PIN_LOCKED:    true,
}

func code(err error) pkcs11.Error {
	var c pkcs11.Error
	if errors.As(err, &c) {
		return c
	}
	return 0
}

func isLost(err error) bool   { return lostCodes[code(err)] }
func isBadPIN(err error) bool { return pinCodes[code(err)] }

// isStaleHandle reports a key handle that is no longer valid although the
// session is: the key must be looked up again.
func isStaleHandle(err error) bool {
	c := code(err)
	return c == pkcs11.CKR_KEY_HANDLE_INVALID || c == pkcs11.CKR_OBJECT_HANDLE_INVALID
}

// isBusy reports a transient failure that needs no reconnect: no session free
// in time, an operation timeout, or a context closed under a racing reconnect.
func isBusy(err error) bool {
	return errors.Is(err, pool.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		err.Error() == "context is closed" || err.Error() == "cannot used closed Context"
}

// isTokenNotFound matches crypto11's unexported errTokenNotFound (pinned
// crypto11 v1.6.2; TestOpenErrors fails if the text changes).
func isTokenNotFound(err error) bool {
	return err.Error() == "could not find PKCS#11 token"
}

// kindOf maps a cause to the sentinel a caller acts on, or nil.
func kindOf(err error) error {
	switch {
	case errors.Is(err, errLabelTaken):
		return ErrKeyExists
	case errors.Is(err, errKeyChanged):
		return ErrKeyNotFound
	case isBadPIN(err):
		return ErrBadPIN
	case isTokenNotFound(err):
		return ErrTokenNotFound
	case isLost(err), isStaleHandle(err), isBusy(err):
		return ErrUnavailable
	}
	return nil
}
