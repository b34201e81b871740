package main

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"

	"github.com/sigil-dev/sigil/audit"
)

// witnessFlags are audit verify's witness options.
type witnessFlags struct {
	Witness []string `help:"A witness's verifier key (name+keyid+base64, as its operator publishes it) whose cosignature counts; repeat for each." sep:"none"`
	MinWit  *int     `name:"min-witnesses" help:"How many of the --witness keys must have cosigned the latest checkpoint (default: all of them)."`
}

// require sets the witnesses and how many must have cosigned in opts.
func (f witnessFlags) require(opts *audit.VerifyOptions) error {
	ws, min, err := f.witnesses()
	opts.Witnesses, opts.MinWitnesses = ws, min
	return err
}

// witnesses parses --witness and --min-witnesses.
func (f witnessFlags) witnesses() ([]note.Verifier, int, error) {
	var vs []note.Verifier
	for _, k := range f.Witness {
		v, err := audit.ParseWitnessKey(k)
		if err != nil {
			return nil, 0, fmt.Errorf("--witness: %w", err)
		}
		vs = append(vs, v)
	}
	min := len(vs)
	if f.MinWit != nil {
		min = *f.MinWit
	}
	if min < 0 || min > len(vs) {
		return nil, 0, fmt.Errorf("--min-witnesses %d: give between 0 and the %d --witness keys", min, len(vs))
	}
	return vs, min, nil
}

// cosigned reports whether the latest checkpoint src serves carries as
// many valid --witness cosignatures as required, for --wait. The log's own
// signature is for Verify to check.
func (f witnessFlags) cosigned(ctx context.Context, src audit.Source) (bool, error) {
	ws, min, err := f.witnesses()
	if err != nil || min == 0 {
		return err == nil, err
	}
	cp, err := src.Checkpoint(ctx)
	if err != nil {
		return false, err
	}
	n, err := note.Open(cp, note.VerifierList(ws...))
	if err != nil {
		return false, nil // none, or one that does not verify: Verify says which
	}
	return len(n.Sigs) >= min, nil
}
