package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/client"
)

type tokenCmd struct {
	State    string   `help:"State directory written by sigil enroll." type:"existingdir" required:""`
	Audience []string `help:"Audience (SPIFFE ID) of the token; repeatable." required:""`
	Scope    string   `help:"Space-separated scopes."`
	Type     string   `help:"Requested token type: access_token (default), jwt or txn_token." enum:",access_token,jwt,txn_token" default:""`
	JSON     bool     `help:"Print the whole token response as JSON instead of the token alone."`
}

// Run gets a token for the workload itself (client_credentials).
func (c tokenCmd) Run(ctx context.Context) error {
	return requestToken(ctx, c.State, client.TokenRequest{
		Audience: c.Audience, Scope: strings.Fields(c.Scope), RequestedTokenType: tokenType(c.Type),
	}, c.JSON)
}

type exchangeCmd struct {
	State        string   `help:"State directory written by sigil enroll." type:"existingdir" required:""`
	SubjectToken string   `name:"subject-token" help:"The token to act on behalf of." required:""`
	SubjectType  string   `name:"subject-token-type" help:"Its type (default: access_token)."`
	ActorToken   string   `name:"actor-token" help:"The workload's own token, to prove the actor."`
	Audience     []string `help:"Audience (SPIFFE ID) of the new token; repeatable." required:""`
	Scope        string   `help:"Space-separated scopes (at most the subject token's)."`
	Type         string   `help:"Requested token type: access_token (default), jwt or txn_token." enum:",access_token,jwt,txn_token" default:""`
	JSON         bool     `help:"Print the whole token response as JSON instead of the token alone."`
}

// Run exchanges a subject token for a narrower one (RFC 8693).
func (c exchangeCmd) Run(ctx context.Context) error {
	return requestToken(ctx, c.State, client.TokenRequest{
		SubjectToken: c.SubjectToken, SubjectTokenType: c.SubjectType, ActorToken: c.ActorToken,
		Audience: c.Audience, Scope: strings.Fields(c.Scope), RequestedTokenType: tokenType(c.Type),
	}, c.JSON)
}

// tokenType maps the flag's short names to RFC 8693 token type URNs.
func tokenType(short string) string {
	return map[string]string{
		"access_token": api.TokenTypeAccessToken, "jwt": api.TokenTypeJWT, "txn_token": api.TokenTypeTxnToken,
	}[short]
}

func requestToken(ctx context.Context, state string, r client.TokenRequest, asJSON bool) error {
	return withWorkload(ctx, state, func(w *client.Workload) error {
		resp, err := w.Token(ctx, r)
		switch {
		case err != nil:
			return err
		case asJSON:
			return printJSON(resp)
		}
		fmt.Println(resp.AccessToken)
		return nil
	})
}

type introspectCmd struct {
	State string `help:"State directory written by sigil enroll." type:"existingdir" required:""`
	Token string `arg:"" help:"The token to introspect."`
}

// Run prints what sigild knows of a token (RFC 7662).
func (c introspectCmd) Run(ctx context.Context) error {
	return withWorkload(ctx, c.State, func(w *client.Workload) error {
		info, err := w.Introspect(ctx, c.Token)
		if err != nil {
			return err
		}
		return printJSON(info)
	})
}

type revokeCmd struct {
	State string `help:"State directory written by sigil enroll." type:"existingdir" required:""`
	Token string `arg:"" help:"The token to revoke, with every token exchanged from it."`
}

// Run revokes a token and its descendants (RFC 7009).
func (c revokeCmd) Run(ctx context.Context) error {
	return withWorkload(ctx, c.State, func(w *client.Workload) error {
		if err := w.Revoke(ctx, c.Token); err != nil {
			return err
		}
		fmt.Println("revoked")
		return nil
	})
}

// withWorkload opens the workload in state (its TPM key for mTLS), runs fn
// and gives a server's refusal its exit code.
func withWorkload(ctx context.Context, state string, fn func(*client.Workload) error) error {
	w, err := client.Open(ctx, state)
	if err != nil {
		return err
	}
	defer w.Close()
	return exitCode(fn(w))
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
