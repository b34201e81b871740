package enroll

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/ca"
	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// Issued is a certificate and what it was issued on.
type Issued struct {
	Certificate *api.Certificate
	Result      *attest.Result
	Decision    policy.Decision
	// PreviousAK is the AK hash the EK was bound to before, when this
	// enrollment rebound the device.
	PreviousAK string
}

// Complete consumes the challenge — a failed attempt burns it — verifies the
// evidence against it, asks policy, issues the certificate and records
// device, evidence and certificate in one transaction. Nothing is returned
// unless it was recorded.
func (s *Service) Complete(ctx context.Context, req api.CompleteRequest) (*Issued, error) {
	ch, err := s.consume(ctx, req.ChallengeID, store.ChallengeEnroll)
	if err != nil {
		return nil, err
	}
	issued, err := s.complete(ctx, ch, req)
	if err != nil {
		s.recordDenial(ctx, ch, err)
	}
	return issued, err
}

func (s *Service) complete(ctx context.Context, ch store.Challenge, req api.CompleteRequest) (*Issued, error) {
	var p pending
	if err := json.Unmarshal(ch.Pending, &p); err != nil {
		return nil, fmt.Errorf("enroll: challenge state: %w", err)
	}
	res, err := s.Verifier.Complete(attest.Pending{
		Identity: ch.SPIFFEID, EKCertificate: p.EKCertificate, EKPublic: p.EKPublic,
		AK: p.AK, Nonce: ch.Nonce, SecretHash: ch.SecretHash,
	}, completion(req))
	if err != nil {
		return nil, err
	}
	if res.EK.Hash != ch.EKHash || res.AK.Hash != ch.AKHash {
		return nil, errors.New("enroll: verified EK or AK differs from the challenge's")
	}
	if err := res.Evidence.SetWorkload(workloadEvidence(req.Workload)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return s.issue(ctx, ch, res, req.ServerAuth, p.ReplaceAK)
}

func (s *Service) issue(ctx context.Context, ch store.Challenge, res *attest.Result, serverAuth, replace bool) (*Issued, error) {
	id, err := identity.Workload(ch.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("enroll: stored identity: %w", err)
	}
	prevAK, err := s.boundAK(ctx, res.EK.Hash)
	if err != nil {
		return nil, err
	}
	if prevAK == res.AK.Hash {
		prevAK = ""
	}
	if prevAK != "" && !replace {
		return nil, akMismatch(res.EK.Hash, prevAK, res.AK.Hash)
	}
	held, err := otherHolders(ctx, s.Store, id.String(), res.EK.Hash, s.now())
	if err != nil {
		return nil, err
	}
	mine, err := deviceIdentities(ctx, s.Store, res.EK.Hash, s.now())
	if err != nil {
		return nil, err
	}
	d, err := s.decide(res, id, prevAK, held, mine)
	if err != nil {
		return nil, err
	}
	bundle, digest, err := res.Evidence.Encode()
	if err != nil {
		return nil, fmt.Errorf("enroll: evidence: %w", err)
	}
	ekHash, _ := hex.DecodeString(res.EK.Hash)
	cert, err := s.CA.Issue(ctx, ca.Request{
		CSR: res.CSR, CSRSignatureChecked: true, Key: res.Key, ID: id, ServerAuth: serverAuth,
		Evidence: ca.Evidence{Digest: digest, EKHash: ekHash, PolicyVersion: d.Version},
	})
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, res, cert, bundle, hex.EncodeToString(digest), d, prevAK, held, mine); err != nil {
		return nil, err
	}
	return &Issued{Certificate: s.answer(cert, digest, d.Version), Result: res, Decision: d, PreviousAK: prevAK}, nil
}

// consume burns the challenge, whatever the outcome of the attempt.
func (s *Service) consume(ctx context.Context, id string, kind store.ChallengeKind) (store.Challenge, error) {
	if id == "" || len(id) > 64 {
		return store.Challenge{}, fmt.Errorf("%w: challenge id missing or too long", ErrBadRequest)
	}
	ch, err := s.Store.ConsumeChallenge(ctx, id, s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, perr := parseRenewChallenge(id); perr == nil {
			return ch, fmt.Errorf("%w: challenge %q is for renew, not %s", ErrBadRequest, id, kind)
		}
		return ch, fmt.Errorf("%w: %q", ErrUnknownChallenge, id)
	case errors.Is(err, store.ErrChallengeUsed):
		return ch, fmt.Errorf("%w: %q", ErrChallengeUsed, id)
	case errors.Is(err, store.ErrChallengeExpired):
		return ch, fmt.Errorf("%w: %q", ErrChallengeExpired, id)
	case err != nil:
		return ch, fmt.Errorf("enroll: consume challenge: %w", err)
	case ch.Kind != kind:
		return ch, fmt.Errorf("%w: challenge %q is for %s, not %s", ErrBadRequest, id, ch.Kind, kind)
	}
	return ch, nil
}

// boundAK returns the AK hash the EK is bound to, or "" for a new device.
func (s *Service) boundAK(ctx context.Context, ekHash string) (string, error) {
	d, err := s.Store.Device(ctx, ekHash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("enroll: look up device: %w", err)
	case d.Status == store.DeviceDisabled:
		return "", fmt.Errorf("%w: EK %s", ErrDeviceDisabled, ekHash)
	}
	return d.AKHash, nil
}

// decide asks policy whether the device may hold the identity, which the
// devices in held hold already, and, when its EK is bound to another AK,
// whether it may rebind.
func (s *Service) decide(res *attest.Result, id spiffeid.ID, prevAK string, held holders, mine []string) (policy.Decision, error) {
	facts := device.Facts(res)
	w, err := workloadFacts(res.Evidence.Workload)
	if err != nil {
		return policy.Decision{}, err
	}
	if prevAK != "" {
		prev, _ := hex.DecodeString(prevAK)
		d := s.Policy.Decide(policy.EnrollRequest{Action: policy.Rebind, Device: facts, Identity: id.String(), PreviousAKHash: prev,
			OtherHolders: held.digests, DeviceIdentities: mine, Workload: w})
		if !d.Allowed {
			return d, &DeniedError{Identity: id.String() + " (rebind to a new AK)", Decision: d}
		}
	}
	d := s.Policy.Decide(policy.EnrollRequest{Action: policy.Enroll, Device: facts, Identity: id.String(), OtherHolders: held.digests,
		DeviceIdentities: mine, Workload: w})
	if !d.Allowed {
		return d, &DeniedError{Identity: id.String(), Decision: d}
	}
	return d, nil
}
