// Package trust acts on changes of trust in devices that happen away from
// a request: a policy set that no longer permits what the fleet's stored
// evidence shows (Reevaluator), and devices that have not attested within
// attestation.max_age (Sweeper). Both revoke through the store's cascade
// (device.Distrust: certificates, then every token bound to them and
// exchanged from those), each revocation audited with its reason and what
// decided it, in the transaction that revokes; the revocation feed and its
// subscribers hear of them from the store. On replicas sharing a database,
// each runs once: a policy application is fenced in the store
// (PutAppliedPolicy) and taken under a lock, and a certificate is revoked by
// exactly one transaction.
//
// A renewal that fails attestation revokes in the enrollment service
// (internal/enroll), on the request's own evidence.
package trust

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// PolicySet decides; *policy.Set is one.
type PolicySet interface {
	Decide(policy.Request) policy.Decision
	Version() string
}

var _ PolicySet = (*policy.Set)(nil)

// Revocation is a certificate a policy set would revoke, and why.
type Revocation struct {
	Serial    string   `json:"serial"`
	SPIFFEID  string   `json:"spiffe_id"`
	EKHash    string   `json:"ek_hash"`
	Decision  string   `json:"decision"`
	PolicyIDs []string `json:"policy_ids,omitempty"`
}

// Unverifiable is a certificate whose stored evidence no longer verifies,
// so no policy can be evaluated on it: it is reported, not revoked (the
// evidence was verified when the certificate was issued).
type Unverifiable struct {
	Serial string `json:"serial"`
	EKHash string `json:"ek_hash"`
	Error  string `json:"error"`
}

// Plan is what a policy set would revoke of the fleet, judged on stored
// evidence: for every current certificate (neither revoked nor expired) of
// every active device, the renewal decision on the evidence it was issued
// on.
type Plan struct {
	Version      string         `json:"version"`
	Devices      int            `json:"devices"`      // active devices holding current certificates
	Certificates int            `json:"certificates"` // their current certificates, each evaluated
	Revoke       []Revocation   `json:"revoke"`
	Unverifiable []Unverifiable `json:"unverifiable,omitempty"`
}

// RevokedDevices lists, sorted and each once, the EK hashes of the devices
// the plan revokes a certificate of.
func (p Plan) RevokedDevices() []string {
	var out []string
	for _, r := range p.Revoke {
		out = append(out, r.EKHash)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Exceeds reports whether the plan revokes more than fraction of the
// fleet's devices. Revoking a single device never exceeds: a policy aimed
// at one device is not held in a small fleet.
func (p Plan) Exceeds(fraction float64) bool {
	n := len(p.RevokedDevices())
	return n > 1 && float64(n) > fraction*float64(p.Devices)
}

// Planner evaluates a policy set against the fleet's stored evidence.
type Planner struct {
	Store    store.Reader
	Verifier *attest.Verifier
	// Only, if set, picks the certificates to judge; the others are
	// neither judged nor counted.
	Only func(store.Certificate) bool
}

// Plan evaluates set, changing nothing.
func (pl Planner) Plan(ctx context.Context, set PolicySet, now time.Time) (Plan, error) {
	devices, err := pl.Store.Devices(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("trust: list devices: %w", err)
	}
	p := Plan{Version: set.Version(), Revoke: []Revocation{}}
	for _, dev := range devices {
		if dev.Status == store.DeviceDisabled {
			continue
		}
		certs, err := device.CurrentCertificates(ctx, pl.Store, dev.EKHash, now)
		if err != nil {
			return Plan{}, fmt.Errorf("trust: %w", err)
		}
		held := identities(certs)
		if pl.Only != nil {
			certs = slices.DeleteFunc(certs, func(c store.Certificate) bool { return !pl.Only(c) })
		}
		if len(certs) == 0 {
			continue
		}
		p.Devices++
		for _, c := range certs {
			if err := pl.judge(ctx, set, c, held, now, &p); err != nil {
				return Plan{}, err
			}
		}
	}
	return p, nil
}

// judge decides c's renewal under set on the evidence c was issued on (with
// the host agent's facts, if it has them) and the identities its device
// holds, held, and adds the outcome to p.
func (pl Planner) judge(ctx context.Context, set PolicySet, c store.Certificate, held []string, now time.Time, p *Plan) error {
	p.Certificates++
	facts, err := device.CertificateFacts(ctx, pl.Store, pl.Verifier, c)
	var w *policy.WorkloadFacts
	if err == nil {
		w, err = device.CertificateWorkload(ctx, pl.Store, c)
	}
	if err != nil {
		p.Unverifiable = append(p.Unverifiable, Unverifiable{Serial: c.Serial, EKHash: c.EKHash, Error: err.Error()})
		return nil
	}
	others, err := otherHolders(ctx, pl.Store, c.SPIFFEID, c.EKHash, now)
	if err != nil {
		return err
	}
	d := set.Decide(policy.EnrollRequest{Action: policy.Renew, Device: facts, Identity: c.SPIFFEID, OtherHolders: others,
		DeviceIdentities: held, Workload: w})
	if !d.Allowed {
		p.Revoke = append(p.Revoke, Revocation{Serial: c.Serial, SPIFFEID: c.SPIFFEID, EKHash: c.EKHash, Decision: d.Reason(), PolicyIDs: d.PolicyIDs})
	}
	return nil
}

// identities are the SPIFFE IDs certs are for, sorted, each once: what
// policy sees as context.device_identities.
func identities(certs []store.Certificate) []string {
	ids := []string{}
	for _, c := range certs {
		ids = append(ids, c.SPIFFEID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// otherHolders are the EK hashes of the other active devices holding
// identity at now, as policy sees them (context.other_holders).
func otherHolders(ctx context.Context, r store.CertificateReader, identity, ekHash string, now time.Time) ([][]byte, error) {
	all, err := r.IdentityHolders(ctx, identity, now)
	if err != nil {
		return nil, fmt.Errorf("trust: holders of %s: %w", identity, err)
	}
	var out [][]byte
	for _, e := range all {
		if e == ekHash {
			continue
		}
		b, err := hex.DecodeString(e)
		if err != nil {
			return nil, fmt.Errorf("trust: holders of %s: stored EK hash %q: %w", identity, e, err)
		}
		out = append(out, b)
	}
	return out, nil
}
