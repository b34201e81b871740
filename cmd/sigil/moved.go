package main

import "errors"

// movedHSMCmd answers what `sigil hsm keys|rotate` used to do: those
// commands need the HSM and the database, which sigil, installed on every
// workload host, does not link. They are sigild's now.
type movedHSMCmd struct {
	Args []string `arg:"" optional:"" passthrough:"" help:"Ignored."`
}

// errHSMMoved says where the HSM commands went.
var errHSMMoved = errors.New("`sigil hsm` moved to sigild, which holds the HSM and the store: " +
	"`sigild --config FILE key list` lists the keys on the HSM, `sigild --config FILE key rotate` rotates the token key")

func (movedHSMCmd) Run() error { return &exitError{code: 2, err: errHSMMoved} }
