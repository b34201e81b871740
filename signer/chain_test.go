package signer_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// TestDelegationChain: a user token from an IdP, A exchanges it for B, B
// for C. C's token carries the user as sub, the nested act chain, the
// narrowed scope and B's cnf; at the depth limit C cannot go on.
func TestDelegationChain(t *testing.T) {
	p := newIdP(t, t0)
	e := newEnv(t, hsm.ES256, signer.WithExternalIssuers(p.issuer()))
	r := rules()
	r.MaxActDepth = 2
	exchange := func(caller signer.Caller, subjectToken, aud, scope string) (string, error) {
		sub, err := e.verify.Verify(t.Context(), subjectToken, caller.ID)
		if err != nil {
			return "", err
		}
		c, err := r.Exchange(e.clock.Now(), signer.Request{Caller: caller, Subject: sub, Audience: []string{aud}, Scope: scope})
		if err != nil {
			return "", err
		}
		m, err := e.mint.AccessToken(t.Context(), *c)
		if err != nil {
			return "", err
		}
		return m.Token, nil
	}
	forB, err := exchange(callerA, p.token(nil, nil), callerB.ID, "read write")
	if err != nil {
		t.Fatalf("A exchanges the user token: %v", err)
	}
	e.clock.Advance(time.Minute)
	forC, err := exchange(callerB, forB, callerC.ID, "read")
	if err != nil {
		t.Fatalf("B exchanges A's token: %v", err)
	}
	c, err := e.verify.Verify(t.Context(), forC, callerC.ID)
	if err != nil {
		t.Fatalf("C verifies: %v", err)
	}
	want := &token.Actor{Subject: callerB.ID, Actor: &token.Actor{Subject: callerA.ID}}
	switch {
	case c.Subject != "alice@example.com" || c.SubjectIssuer != idpIssuer:
		t.Fatalf("sub %q from %q", c.Subject, c.SubjectIssuer)
	case !reflect.DeepEqual(c.Actor, want):
		got, _ := json.Marshal(c.Actor)
		t.Fatalf("act %s", got)
	case !reflect.DeepEqual(c.Scope, []string{"read"}) || c.Confirmation != callerB.Thumbprint || c.ClientID != callerB.ID:
		t.Fatalf("scope %v cnf %q client_id %q", c.Scope, c.Confirmation, c.ClientID)
	case !c.Expiry.Equal(t0.Add(20 * time.Minute)):
		t.Fatalf("exp %v outlives the user token", c.Expiry)
	}
	_, err = exchange(callerC, forC, "spiffe://sigil.test/workload/d", "read")
	if kind := kindOf(t, err); kind != signer.ErrGrant {
		t.Fatalf("C exchanges beyond the depth limit: %v, want ErrGrant", err)
	}
	_, err = exchange(callerC, forB, "spiffe://sigil.test/workload/d", "")
	if kind := kindOf(t, err); kind != signer.ErrInvalid {
		t.Fatalf("C verifies B's token as a subject token: %v, want ErrInvalid (wrong audience)", err)
	}
}
