package enroll

import (
	"context"
	"errors"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/internal/store"
)

// nudge asks the log for a checkpoint soon.
func (s *Service) nudge() {
	if s.Nudge != nil {
		s.Nudge()
	}
}

// recordDenial logs a completed attempt that attestation or policy refused.
// Refusals before a challenge exists are not logged: they cost an attacker
// nothing and would let anyone fill the log.
func (s *Service) recordDenial(ctx context.Context, ch store.Challenge, cause error) {
	var denied *DeniedError
	d := audit.Denial{SPIFFEID: ch.SPIFFEID, EKHash: ch.EKHash}
	switch {
	case errors.As(cause, &denied):
		d.Reason, d.PolicyVersion, d.PolicyIDs = denied.Decision.Reason(), denied.Decision.Version, denied.Decision.PolicyIDs
	case attest.StepOf(cause) != "":
		d.Reason = cause.Error()
	default:
		return
	}
	if err := store.RecordAudit(ctx, s.Store, audit.EnrollmentDenied, d); err != nil {
		s.Log.ErrorContext(ctx, "audit: cannot record an enrollment denial", "spiffe_id", ch.SPIFFEID, "err", err)
		return
	}
	s.nudge()
}
