package audit

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what Verify checked, filled in as far as it got.
type Report struct {
	Origin string    // the log, from its verified checkpoint
	Size   uint64    // entries the latest checkpoint covers
	Root   []byte    // its root hash
	Time   time.Time // when it was signed (zero: not stated)

	Cosigners []string // witnesses (VerifyOptions.Witnesses) whose cosignature verifies
	Witnessed int      // cosignatures required (VerifyOptions.MinWitnesses)

	HadState     bool   // a state file held an earlier checkpoint
	PreviousSize uint64 // its size
	StateUpdated bool   // the state file now holds the latest checkpoint

	Incremental bool   // only the entries from From on were read (the state's range)
	From        uint64 // the first entry read
	Rerun       bool   // an incremental run failed and this is the full re-run that says why

	Checkpoints int          // distinct signed tree sizes checked, the latest included
	Entries     uint64       // entries read
	Kinds       map[Kind]int // entries that decoded and passed OnEntry, by kind
	FirstBad    int64        // index of the first bad entry, -1 if none is known
	Reason      string       // why verification failed; empty on success
}

// OK reports whether verification succeeded.
func (r Report) OK() bool { return r.Reason == "" }

// failed records err.
func (r *Report) failed(err error) {
	r.Reason = err.Error()
	var ee *EntryError
	var me *MismatchError
	var ue *UnsignedError
	switch {
	case errors.As(err, &ee):
		r.FirstBad = int64(ee.Index)
	case errors.As(err, &me):
		r.FirstBad = int64(me.From)
	case errors.As(err, &ue):
		r.FirstBad = int64(ue.Size)
	}
}

// String is a summary for a person.
func (r Report) String() string {
	var b strings.Builder
	status := "VERIFIED"
	if !r.OK() {
		status = "FAILED"
	}
	fmt.Fprintf(&b, "audit log %s: %s\n", orUnknown(r.Origin), status)
	if r.Root != nil {
		fmt.Fprintf(&b, "  checkpoint:   size %d, root %s%s\n", r.Size, b64(r.Root), signedAt(r.Time))
	}
	if r.Cosigners != nil || r.Witnessed > 0 {
		fmt.Fprintf(&b, "  witnessed:    by %d (%s), %d required\n", len(r.Cosigners), strings.Join(r.Cosigners, ", "), r.Witnessed)
	}
	b.WriteString(r.previous())
	fmt.Fprintf(&b, "  checkpoints:  %d signed tree sizes checked\n", r.Checkpoints)
	fmt.Fprintf(&b, "  entries:      %d read%s\n", r.Entries, r.mode())
	for _, k := range slices.Sorted(maps.Keys(r.Kinds)) {
		fmt.Fprintf(&b, "    %-22s %d\n", k, r.Kinds[k])
	}
	if !r.OK() {
		if r.FirstBad >= 0 {
			fmt.Fprintf(&b, "  first bad entry: %d\n", r.FirstBad)
		}
		fmt.Fprintf(&b, "  reason:       %s\n", r.Reason)
	}
	if r.StateUpdated {
		fmt.Fprintf(&b, "  state:        now at size %d\n", r.Size)
	}
	return b.String()
}

// mode says which entries the run read.
func (r Report) mode() string {
	switch {
	case r.Incremental:
		return fmt.Sprintf(" (incremental: from %d, the entries added since the state's checkpoint)", r.From)
	case r.Rerun:
		return " (in full: the entries added since the state's checkpoint did not extend it to this one)"
	}
	return ""
}

// previous describes the state the run started from.
func (r Report) previous() string {
	switch {
	case !r.HadState && r.OK():
		return "  previous:     none (first verification: this checkpoint is trusted from now on)\n"
	case !r.HadState:
		return "  previous:     none\n"
	case r.OK():
		return fmt.Sprintf("  previous:     size %d, and the log extends it\n", r.PreviousSize)
	}
	return fmt.Sprintf("  previous:     size %d\n", r.PreviousSize)
}

func signedAt(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", signed " + t.UTC().Format(time.RFC3339)
}

func orUnknown(s string) string {
	if s == "" {
		return "(unverified)"
	}
	return s
}
