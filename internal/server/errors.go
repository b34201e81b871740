package server

import (
	"errors"
	"net/http"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/audit"
	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/enroll"
	"github.com/sigil-dev/sigil/internal/store"
)

// fail answers err. Verification failures are logged in full and answered
// with the step that failed; policy denials say what was denied and by
// which policy set; anything unexpected is a 500 without detail.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, desc := classify(err)
	status, code, desc = s.unavailable(r.Context(), status, code, desc)
	log := s.Log.WarnContext
	if status >= 500 {
		log = s.Log.ErrorContext
	}
	log(r.Context(), "request failed", "path", r.URL.Path, "status", status, "code", code, "err", err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	if errors.Is(err, enroll.ErrNotRecorded) && s.metrics != nil {
		s.metrics.unrecorded.Inc()
	}
	writeError(w, status, code, desc)
}

func classify(err error) (status int, code, description string) {
	var denied *enroll.DeniedError
	var revoked *enroll.RevokedError
	switch {
	case errors.As(err, &revoked):
		status, code, description = classify(revoked.Err)
		return status, code, description + "; the device's certificates were revoked (" + revoked.Reason + "), with every token bound to them"
	case errors.As(err, &denied):
		return http.StatusForbidden, "policy_denied", denied.Error()
	case errors.Is(err, enroll.ErrAKReplaced):
		return http.StatusConflict, "ak_replaced", err.Error()
	case errors.Is(err, enroll.ErrAKMismatch):
		return http.StatusConflict, "ak_mismatch", err.Error()
	case attest.StepOf(err) != "":
		return http.StatusForbidden, "attestation_failed", "attestation evidence rejected at step " + string(attest.StepOf(err)) + "; the server log has the detail"
	case errors.Is(err, errBadQuery):
		return http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found", "no such entry"
	case errors.Is(err, enroll.ErrBadRequest):
		return http.StatusBadRequest, "invalid_request", err.Error()
	case errors.Is(err, enroll.ErrUnknownChallenge):
		return http.StatusNotFound, "unknown_challenge", "unknown challenge: start a new enrollment"
	case errors.Is(err, enroll.ErrChallengeUsed):
		return http.StatusConflict, "challenge_used", "challenge already used: start a new enrollment"
	case errors.Is(err, enroll.ErrChallengeExpired):
		return http.StatusGone, "challenge_expired", "challenge expired: start a new enrollment"
	case errors.Is(err, enroll.ErrNotRenewable):
		return http.StatusForbidden, "not_renewable", err.Error() + "; enroll again"
	case errors.Is(err, enroll.ErrDeviceDisabled):
		return http.StatusForbidden, "device_disabled", "this device is disabled"
	case errors.Is(err, enroll.ErrNotRecorded):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "the operation could not be recorded, so it did not take effect; retry later"
	case errors.Is(err, audit.ErrNoCheckpoint):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "the audit log has no signed checkpoint yet; retry shortly"
	case errors.Is(err, hsm.ErrUnavailable):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "signing service unavailable; retry later"
	}
	return http.StatusInternalServerError, "server_error", "internal error"
}

// outcome labels a failed request for metrics.
func outcome(err error) string {
	_, code, _ := classify(err)
	return code
}
