package main

import (
	"fmt"

	"github.com/sigil-dev/sigil/policy"
)

type policyCmd struct {
	Check policyCheckCmd `cmd:"" help:"Validate every policy in DIR against the schema."`
	Test  policyTestCmd  `cmd:"" help:"Run the test cases in DIR/tests against the policies in DIR."`
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
