// Package enroll runs attested enrollment and renewal: it ties evidence
// verification (attest), the policy decision (policy), issuance (ca) and the
// records (store) together, all or nothing.
package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// Decider decides policy requests; *policy.Engine is one.
type Decider interface {
	Decide(policy.Request) policy.Decision
}

// Service runs enrollments. It is safe for concurrent use.
type Service struct {
	Verifier     *attest.Verifier
	Policy       Decider
	CA           *ca.CA
	Store        store.Store
	TrustDomain  spiffeid.TrustDomain
	ChallengeTTL time.Duration
	Log          *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Nudge, if set, is called after audit entries were committed, so the
	// log signs a checkpoint covering them soon.
	Nudge func()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// pending is the challenge state kept in the store between the two steps.
type pending struct {
	EKCertificate []byte              `json:"ek_certificate,omitempty"`
	EKPublic      []byte              `json:"ek_public"`
	AK            attest.AKParameters `json:"ak"`
	ReplaceAK     bool                `json:"replace_ak,omitempty"`
}

// Challenge verifies the EK and AK and answers with a credential to
// activate and a nonce.
func (s *Service) Challenge(ctx context.Context, req api.ChallengeRequest) (*api.Challenge, error) {
	id, err := s.identity(req.Identity)
	if err != nil {
		return nil, err
	}
	ek, err := s.Verifier.VerifyEK(req.EKCertificate, req.EKPublic)
	if err != nil {
		return nil, err
	}
	akParams := akParameters(req.AK)
	ak, err := s.Verifier.VerifyAK(ek, akParams)
	if err != nil {
		return nil, err
	}
	if err := s.checkDevice(ctx, ek.Hash, ak.Hash, req.ReplaceAK); err != nil {
		return nil, err
	}
	ch, err := attest.NewChallenge(ek, ak)
	if err != nil {
		return nil, err
	}
	state, err := json.Marshal(pending{EKCertificate: req.EKCertificate, EKPublic: req.EKPublic, AK: akParams, ReplaceAK: req.ReplaceAK})
	if err != nil {
		return nil, fmt.Errorf("enroll: encode challenge state: %w", err)
	}
	now := s.now()
	secretHash := sha256.Sum256(ch.Secret)
	rec := store.Challenge{
		ID: randomID(), EKHash: ek.Hash, AKHash: ak.Hash, Nonce: ch.Nonce,
		SecretHash: secretHash[:], SPIFFEID: id.String(), Kind: store.ChallengeEnroll,
		Pending: state, CreatedAt: now, ExpiresAt: now.Add(s.ChallengeTTL),
	}
	if err := s.Store.CreateChallenge(ctx, rec); err != nil {
		return nil, fmt.Errorf("enroll: store challenge: %w", err)
	}
	return &api.Challenge{
		ID: rec.ID, Credential: ch.Credential.Credential, Secret: ch.Credential.Secret,
		Nonce: ch.Nonce, PCRs: s.Verifier.PCRs(), ExpiresAt: rec.ExpiresAt,
	}, nil
}

// identity checks a requested SPIFFE ID: the standard's grammar and
// limits, a workload (a path), in the service's trust domain.
func (s *Service) identity(raw string) (spiffeid.ID, error) {
	id, err := identity.Workload(raw)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%w: identity: %w", ErrBadRequest, err)
	}
	if id.TrustDomain() != s.TrustDomain {
		return spiffeid.ID{}, fmt.Errorf("%w: identity %s is outside trust domain %s", ErrBadRequest, id, s.TrustDomain)
	}
	return id, nil
}

// checkDevice refuses disabled devices early, and an AK other than the
// device's unless the request replaces it; completion checks again.
func (s *Service) checkDevice(ctx context.Context, ekHash, akHash string, replace bool) error {
	d, err := s.Store.Device(ctx, ekHash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("enroll: look up device: %w", err)
	case d.Status == store.DeviceDisabled:
		return fmt.Errorf("%w: EK %s", ErrDeviceDisabled, ekHash)
	case d.AKHash != akHash && !replace:
		return akMismatch(ekHash, d.AKHash, akHash)
	}
	return nil
}

// akMismatch is the refusal of an enrollment that brings an AK other than
// the device's without asking to replace it.
func akMismatch(ekHash, bound, brought string) error {
	return fmt.Errorf("%w: device %s is bound to AK %s but this enrollment brings AK %s; "+
		"enroll with the host state that holds the device's AK (every enrollment on a host shares one: sigil enroll --host-state DIR), "+
		"or replace the host's AK explicitly (sigil enroll --replace-ak), after which every identity of this device renews only with the new AK",
		ErrAKMismatch, ekHash, bound, brought)
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
