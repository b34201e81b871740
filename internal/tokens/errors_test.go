package tokens

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
)

// TestOAuthError: every kind of failure a token request's steps return
// becomes its OAuth error in oauthError, with the description the client
// sees; anything else passes unchanged.
func TestOAuthError(t *testing.T) {
	tokenErr := func(kind error, reason string) error {
		return &signer.TokenError{Kind: kind, Reason: reason, Err: errors.New("detail for the log")}
	}
	tests := []struct {
		name string
		err  error
		code string
		desc string
	}{
		{"rule: request", &signer.RuleError{Kind: signer.ErrRequest, Reason: "r"}, InvalidRequest, "r"},
		{"rule: client", &signer.RuleError{Kind: signer.ErrClient, Reason: "r"}, UnauthorizedClient, "r"},
		{"rule: grant", &signer.RuleError{Kind: signer.ErrGrant, Reason: "r"}, InvalidRequest, "r"},
		{"rule: target", &signer.RuleError{Kind: signer.ErrTarget, Reason: "r"}, InvalidTarget, "r"},
		{"rule: scope", &signer.RuleError{Kind: signer.ErrScope, Reason: "r"}, InvalidScope, "r"},
		{"malformed subject token", &presentedError{"subject_token", tokenErr(signer.ErrMalformed, "not a compact JWS")}, InvalidRequest, "subject_token is malformed: not a compact JWS"},
		{"invalid actor token", &presentedError{"actor_token", tokenErr(signer.ErrInvalid, "expired")}, InvalidRequest, "actor_token is invalid: expired"},
		{"revoked subject token", &presentedError{"subject_token", store.ErrRevoked}, InvalidRequest, "subject_token has been revoked"},
		{"unknown subject token", &presentedError{"subject_token", store.ErrNotFound}, InvalidRequest, "subject_token is invalid: not a token this server issued"},
		{"evidence no longer verifies", fmt.Errorf("facts: %w", &attest.Error{Step: attest.StepQuote, Err: errors.New("bad")}), AccessDenied,
			"the attestation evidence of the client certificate no longer verifies (step quote): renew or enroll again"},
		{"an OAuth error already", invalidRequest("grant_type is missing"), InvalidRequest, "grant_type is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var oe *Error
			if !errors.As(oauthError(tt.err), &oe) || oe.Code != tt.code || oe.Description != tt.desc {
				t.Fatalf("oauthError(%v) = %+v, want %s: %s", tt.err, oe, tt.code, tt.desc)
			}
		})
	}
	for _, err := range []error{nil, ErrNotRecorded, signer.ErrStale, errors.New("store down")} {
		if got := oauthError(err); got != err {
			t.Errorf("oauthError(%v) = %v, want it unchanged", err, got)
		}
	}
}
