package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/cedar-policy/cedar-go"
)

// WorkloadFacts are what a host agent (sigil agent --host) asserts about the
// local process it asks an identity for: the kernel's credentials of the
// process's Unix socket connection and what /proc says about that process.
// The TPM does not sign them; they are as true as the host's root is
// honest. Policies see them as context.workload, absent when a workload
// enrolled without a host agent:
//
//	when { context has workload && context.workload.exe == "/usr/bin/payments" }
type WorkloadFacts struct {
	UID       uint32
	GID       uint32
	User      string // name of UID on the host, "" if it has none
	Exe       string // absolute path of the executable
	ExeSHA256 []byte // SHA-256 of the executable, 32 bytes
	Cgroup    string // unified cgroup path
	Unit      string // systemd unit, "" outside one
}

// maxWorkloadText bounds each text fact.
const maxWorkloadText = 4096

// record is the Sigil::WorkloadFacts record of the schema.
func (w *WorkloadFacts) record() (cedar.Record, error) {
	sum, err := digest(w.ExeSHA256)
	if err != nil {
		return cedar.Record{}, fmt.Errorf("exe_sha256: %w", err)
	}
	if !strings.HasPrefix(w.Exe, "/") {
		return cedar.Record{}, fmt.Errorf("exe %q: want an absolute path", w.Exe)
	}
	for name, v := range map[string]string{"user": w.User, "exe": w.Exe, "cgroup": w.Cgroup, "unit": w.Unit} {
		if len(v) > maxWorkloadText {
			return cedar.Record{}, fmt.Errorf("%s: longer than %d bytes", name, maxWorkloadText)
		}
	}
	return cedar.NewRecord(cedar.RecordMap{
		"uid":        cedar.Long(int64(w.UID)),
		"gid":        cedar.Long(int64(w.GID)),
		"user":       cedar.String(w.User),
		"exe":        cedar.String(w.Exe),
		"exe_sha256": sum,
		"cgroup":     cedar.String(w.Cgroup),
		"unit":       cedar.String(w.Unit),
	}), nil
}

// ParseWorkloadFacts converts the facts as the wire and the evidence carry
// them (hex digest) into WorkloadFacts.
func ParseWorkloadFacts(uid, gid uint32, user, exe, exeSHA256, cgroup, unit string) (*WorkloadFacts, error) {
	sum, err := hex.DecodeString(exeSHA256)
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("workload exe_sha256 %q: want 64 hex digits", exeSHA256)
	}
	if uid == math.MaxUint32 || gid == math.MaxUint32 {
		return nil, errors.New("workload uid or gid is -1")
	}
	return &WorkloadFacts{UID: uid, GID: gid, User: user, Exe: exe, ExeSHA256: sum, Cgroup: cgroup, Unit: unit}, nil
}

// identitySet is a set of SPIFFE ID strings.
func identitySet(ids []string) (cedar.Set, error) {
	vals := make([]cedar.Value, len(ids))
	for i, id := range ids {
		if _, err := workloadID(id); err != nil {
			return cedar.Set{}, fmt.Errorf("entry %d: %w", i, err)
		}
		vals[i] = cedar.String(id)
	}
	return cedar.NewSet(vals...), nil
}
