package main

import (
	"context"
	"fmt"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/policy"
)

type policyCmd struct {
	Check  policyCheckCmd  `cmd:"" help:"Validate every policy in DIR against the schema."`
	Test   policyTestCmd   `cmd:"" help:"Run the test cases in DIR/tests against the policies in DIR."`
	WhatIf policyWhatIfCmd `cmd:"" name:"what-if" help:"Ask sigild which devices and identities the policies in DIR would revoke, from stored evidence, changing nothing (as an identity in its policy.operators)."`
}

type policyCheckCmd struct {
	Dir string `arg:"" type:"existingdir" help:"Policy directory."`
}

func (c policyCheckCmd) Run() error {
	set, err := policy.Load(c.Dir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	fmt.Printf("%s: %d policies valid, version %s\n", c.Dir, set.Len(), set.Version())
	return nil
}

type policyTestCmd struct {
	Dir string `arg:"" type:"existingdir" help:"Policy directory."`
}

func (c policyTestCmd) Run() error {
	report, err := policy.RunTests(c.Dir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	fmt.Print(report.String())
	if n := len(report.Failures()); n > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d policy test cases failed", n)}
	}
	return nil
}

type policyWhatIfCmd struct {
	State string `help:"State directory (sigil enroll) of an identity listed in sigild's policy.operators." type:"existingdir" required:""`
	JSON  bool   `help:"Print sigild's answer as JSON."`
	Dir   string `arg:"" type:"existingdir" help:"Candidate policy directory."`
}

func (c policyWhatIfCmd) Run(ctx context.Context) error {
	if _, err := policy.Load(c.Dir); err != nil {
		return &exitError{code: 1, err: err}
	}
	files, err := policy.Files(c.Dir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	contents := make(map[string]string, len(files))
	for name, data := range files {
		contents[name] = string(data)
	}
	return withWorkload(ctx, c.State, func(w *client.Workload) error {
		out, err := w.PolicyWhatIf(ctx, contents)
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(out)
		}
		printWhatIf(out)
		return nil
	})
}

// printWhatIf prints what a candidate set would revoke, one certificate a
// line: device, identity, serial, and the decision.
func printWhatIf(w *api.WhatIf) {
	fmt.Printf("policy set %s (in effect: %s): %d devices, %d certificates evaluated from stored evidence\n",
		w.Version, w.ActiveVersion, w.Devices, w.Certificates)
	devices := map[string]bool{}
	for _, r := range w.Revoke {
		devices[r.EKHash] = true
	}
	fmt.Printf("would revoke %d certificates of %d devices, with every token bound to them:\n", len(w.Revoke), len(devices))
	for _, r := range w.Revoke {
		fmt.Printf("  device %s  %s  serial %s\n    %s\n", r.EKHash, r.SPIFFEID, r.Serial, r.Decision)
	}
	for _, u := range w.Unverifiable {
		fmt.Printf("  not evaluated (evidence no longer verifies): device %s serial %s: %s\n", u.EKHash, u.Serial, u.Error)
	}
	if w.Held {
		fmt.Println("loading it would be HELD: it revokes more than policy.max_revoke_fraction of the fleet; sigild policy confirm applies it")
	}
}
