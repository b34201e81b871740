package ssf

import (
	"errors"
	"net/http"
)

// Error is a refusal the receiver can act on: the HTTP status to answer
// and a description that names what was wrong. Code is the RFC 8936
// error code where one applies, else an OAuth-style one.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string { return "ssf: " + e.Code + ": " + e.Description }

func badRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

var (
	// errForbidden: the token's holder is no configured receiver.
	errForbidden = &Error{Status: http.StatusForbidden, Code: "access_denied",
		Description: "the token's subject is not a receiver of this transmitter"}
	// errNoStream: no stream of that id belongs to the caller (another
	// receiver's is answered alike, so that ids are no oracle).
	errNoStream = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such stream"}
	// errMethod: a poll of a push stream.
	errMethod = &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: "the stream is delivered by push, not poll"}
	// errTooManyPolls: a receiver polls more at once than it has streams
	// to poll.
	errTooManyPolls = &Error{Status: http.StatusTooManyRequests, Code: "too_many_requests",
		Description: "too many polls at once: wait for one to answer"}
)

// ErrPushRejected: a receiver answered a pushed SET 400 (RFC 8935 §2.3):
// it will not accept that SET, so it is not pushed again.
var ErrPushRejected = errors.New("ssf: push: the receiver rejected the SET")
