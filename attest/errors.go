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

// QuoteAuthentic reports whether err, from VerifyRenewal, Complete or
// Reverify, failed after the quotes had verified: signed by the AK over the
// nonce and covering every required PCR. Then the PCR values are the TPM's
// own word and it is the event log, or what it says, that fails: evidence
// about the device itself, which only the holder of the TPM could produce.
// Any earlier failure may come from anyone and says nothing about the
// device.
func QuoteAuthentic(err error) bool {
	return StepOf(err) == StepEventLog
}
