package attest

import (
	"errors"
	"fmt"
)

// Step names one verification step; errors carry it so callers can log
// precisely and answer with a stable reason.
type Step string

// The verification steps.
const (
	StepInput      Step = "input"
	StepEK         Step = "ek"
	StepAK         Step = "ak"
	StepActivation Step = "activation"
	StepQuote      Step = "quote"
	StepEventLog   Step = "eventlog"
	StepKey        Step = "key"
	StepCSR        Step = "csr"
)

// Error is a failed verification. Its message is precise and meant for logs
// and operators; Step is the stable part to show an untrusted client.
type Error struct {
	Step Step
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("attest: %s: %v", e.Step, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

func fail(step Step, format string, args ...any) error {
	return &Error{Step: step, Err: fmt.Errorf(format, args...)}
}

// StepOf returns the step at which err failed verification, or "" if err is
// not a verification failure.
func StepOf(err error) Step {
	var e *Error
	if errors.As(err, &e) {
		return e.Step
	}
	return ""
}
