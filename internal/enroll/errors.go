package enroll

import (
	"errors"
	"fmt"

	"github.com/sigil-dev/sigil/policy"
)

// Errors callers map to answers. Each is wrapped with detail for logs.
var (
	// ErrBadRequest: the request is malformed (400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnknownChallenge: no such challenge (404); start over.
	ErrUnknownChallenge = errors.New("unknown challenge")
	// ErrChallengeUsed: a replayed completion (409); never retried.
	ErrChallengeUsed = errors.New("challenge already used")
	// ErrChallengeExpired: the challenge outlived its TTL (410); start over.
	ErrChallengeExpired = errors.New("challenge expired")
	// ErrDeviceDisabled: the device may not hold certificates (403).
	ErrDeviceDisabled = errors.New("device disabled")
	// ErrAKMismatch: the device is bound to another AK than the one the
	// enrollment brings, and it did not ask to replace it (409). Enroll
	// with the host's AK (the host state every enrollment on the host
	// shares), or replace it explicitly.
	ErrAKMismatch = errors.New("the device is bound to another attestation key")
	// ErrAKReplaced: a renewal quoted with an AK the device is no longer
	// bound to, because the host's AK was replaced (409). The workload
	// renews with the host's new AK, or enrolls again.
	ErrAKReplaced = errors.New("the device's attestation key was replaced")
	// ErrNotRecorded: the operation and its audit entry could not be
	// committed, so nothing took effect and nothing was issued. Answer 503
	// with Retry-After; the client may try again.
	ErrNotRecorded = errors.New("could not record the operation in the store and the audit log")
)

// DeniedError is a policy denial. Its message names the identity, why it was
// denied and which policy set version decided.
type DeniedError struct {
	Identity string
	Decision policy.Decision
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("policy denied %s: %s", e.Identity, e.Decision.Reason())
}
