package enroll

import (
	"context"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/attest"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/policy"
)

// workloadEvidence is the evidence form of the facts a host agent sent,
// marked as its assertion; nil without any.
func workloadEvidence(w *api.Workload) *attest.Workload {
	if w == nil {
		return nil
	}
	return &attest.Workload{
		AssertedBy: attest.AssertedByHostAgent, UID: w.UID, GID: w.GID, User: w.User, PID: w.PID,
		Exe: w.Exe, ExeSHA256: w.ExeSHA256, Cgroup: w.Cgroup, Unit: w.Unit,
	}
}

// workloadFacts is what policy sees of the recorded facts; nil without any.
func workloadFacts(w *attest.Workload) (*policy.WorkloadFacts, error) {
	if w == nil {
		return nil, nil
	}
	f, err := policy.ParseWorkloadFacts(w.UID, w.GID, w.User, w.Exe, w.ExeSHA256, w.Cgroup, w.Unit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return f, nil
}

// deviceIdentities are the SPIFFE IDs the device holds at now: its
// certificates neither revoked nor expired, sorted, each once. Policies see
// them as context.device_identities; an AK replacement names them as the
// identities it affects.
func deviceIdentities(ctx context.Context, r store.CertificateReader, ekHash string, now time.Time) ([]string, error) {
	ids, err := r.DeviceIdentities(ctx, ekHash, now)
	if err != nil {
		return nil, fmt.Errorf("enroll: identities of device %s: %w", ekHash, err)
	}
	return ids, nil
}
