// Command showcase is three small services built only on sigil's client and
// verify libraries: a user's request flows frontend → orders → payments,
// each hop carrying a token exchanged for the previous one (RFC 8693),
// narrowed in scope, naming the whole delegation chain in act, and bound to
// the caller's TPM-held certificate.
//
//	showcase serve --role frontend --state DIR --next https://ORDERS_ADDR
//	showcase serve --role orders   --state DIR --next https://PAYMENTS_ADDR
//	showcase serve --role payments --state DIR
//	showcase call  --url https://FRONTEND_ADDR/checkout --ca-bundle PEM --id spiffe://…/frontend --token USER_TOKEN
//
// Every service is an enrolled workload (sigil enroll --server-auth); the
// two inner ones accept only mTLS from workloads of their trust domain and
// a token for themselves. `make demo` runs the three with testenv.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/verify"
)

type cli struct {
	Serve serveCmd `cmd:"" help:"Run one of the three services."`
	Call  callCmd  `cmd:"" help:"Send one request to a service, as a user or as a workload."`
}

func main() {
	var c cli
	k := kong.Parse(&c, kong.Name("showcase"), kong.Description("frontend → orders → payments on sigil."))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	k.BindTo(ctx, (*context.Context)(nil))
	if err := k.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "showcase:", err)
		os.Exit(1)
	}
}

// The scopes each hop asks for: every hop narrows what it was given.
var (
	ordersScope   = []string{"orders:write", "payments:charge"}
	paymentsScope = []string{"payments:charge"}
)

type serveCmd struct {
	Role   string `required:"" enum:"frontend,orders,payments" help:"frontend, orders or payments."`
	State  string `type:"existingdir" xor:"source" required:"" help:"The workload's state directory (sigil enroll --state, with --server-auth)."`
	Agent  string `type:"path" xor:"source" required:"" help:"Or: the host agent's socket (sigil agent --host); the service gets spiffe://TD/workload/ROLE through it."`
	TD     string `name:"trust-domain" default:"sigil.test" help:"Trust domain of the identity asked of the host agent."`
	Listen string `default:"127.0.0.1:0" help:"Address to listen on."`
	Ready  string `type:"path" help:"Write the listening address to this file once serving."`
	Next   string `help:"URL of the next service (frontend: orders; orders: payments)."`
}

func (s serveCmd) Run(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("service", s.Role)
	// The workload identity: the TPM key, its certificate, kept renewed.
	cfg := client.Config{StateDir: s.State, Log: log}
	if s.Agent != "" {
		cfg = client.Config{Agent: s.Agent, Identity: "spiffe://" + s.TD + "/workload/" + s.Role, ServerAuth: true, Log: log}
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	td := c.ID().TrustDomain()
	next := func(name string) (spiffeid.ID, error) {
		if s.Next == "" {
			return spiffeid.ID{}, fmt.Errorf("%s needs --next", s.Role)
		}
		return spiffeid.FromPath(td, "/workload/"+name)
	}

	var handler http.Handler
	tlsCfg := c.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(td))
	switch s.Role {
	case "frontend":
		orders, err := next("orders")
		if err != nil {
			return err
		}
		// Users are not workloads: they come with a token from their IdP,
		// over server-authenticated TLS.
		tlsCfg = tlsconfig.TLSServerConfig(c)
		tlsCfg.MinVersion = tls.VersionTLS13
		handler = frontend(c, c.HTTPClient(orders, ordersScope...), s.Next)
	case "orders":
		payments, err := next("payments")
		if err != nil {
			return err
		}
		if handler, err = protected(ctx, c, "orders:write", orders(c.HTTPClient(payments, paymentsScope...), s.Next)); err != nil {
			return err
		}
	case "payments":
		if handler, err = protected(ctx, c, "payments:charge", http.HandlerFunc(payments)); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, TLSConfig: tlsCfg, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if s.Ready != "" {
		if err := os.WriteFile(s.Ready, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
			return err
		}
	}
	fmt.Printf("%-8s | listening on https://%s as %s\n", s.Role, ln.Addr(), c.ID())
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// protected puts next behind sigil's token verification: mTLS peer whose
// certificate is not revoked, a token for this workload bound to that
// peer's certificate, not revoked, granting scope. The workload's one
// Verifier also serves its TLS configs, which refuse revoked peers at the
// handshake.
func protected(ctx context.Context, c *client.Client, scope string, next http.Handler) (http.Handler, error) {
	v, err := c.Verifier(ctx)
	if err != nil {
		return nil, err
	}
	return v.Middleware(verify.RequireScope(scope, next)), nil
}

// frontend takes the user's IdP token and places the order on the user's
// behalf: the client exchanges the user's token for one for orders. On
// logout it revokes the user's token at sigil, which ends every token
// exchanged from it down the chain.
func frontend(c *client.Client, toOrders *http.Client, ordersURL string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", func(w http.ResponseWriter, r *http.Request) {
		if user, ok := bearer(w, r); ok {
			relay(w, client.WithSubjectToken(r.Context(), user), toOrders, ordersURL+"/orders", "frontend")
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if user, ok := bearer(w, r); ok {
			if err := c.RevokeSubject(r.Context(), user); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			fmt.Printf("frontend | logout: the user's token and every token exchanged from it are revoked\n")
			fmt.Fprintln(w, `{"logged_out":true}`)
		}
	})
	return mux
}

// bearer is the user's token, or answers 401.
func bearer(w http.ResponseWriter, r *http.Request) (string, bool) {
	user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || user == "" {
		http.Error(w, "send Authorization: Bearer <your token>", http.StatusUnauthorized)
	}
	return user, ok && user != ""
}

// orders places an order and charges it: the client exchanges the
// verified incoming token (in the request's context) for one for payments.
func orders(toPayments *http.Client, paymentsURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		relay(w, r.Context(), toPayments, paymentsURL+"/charge", "orders")
	})
}

// payments says who called on whose behalf.
func payments(w http.ResponseWriter, r *http.Request) {
	c, _ := verify.FromContext(r.Context())
	chain := c.ActChain() // the caller first; empty when the subject itself called
	switch len(chain) {
	case 0:
		fmt.Printf("payments | charge for %s, called by itself\n", c.Subject)
	case 1:
		fmt.Printf("payments | charge for %s, called by %s\n", c.Subject, chain[0])
	default:
		fmt.Printf("payments | charge for %s, called by %s, on behalf of %s\n", c.Subject, chain[0], strings.Join(chain[1:], " ← "))
	}
	fmt.Printf("payments |   scope %q, token bound to the caller's certificate (cnf x5t#S256 %s…)\n", strings.Join(c.Scope, " "), c.Confirmation[:12])
	json.NewEncoder(w).Encode(map[string]any{"charged": "42.00 EUR", "for": c.Subject, "act": chain, "scope": c.Scope})
}

// relay calls url through hc with ctx and answers with what it got.
func relay(w http.ResponseWriter, ctx context.Context, hc *http.Client, url, from string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Printf("%-8s | call %s failed: %v\n", from, url, err)
		status := http.StatusBadGateway
		if errors.Is(err, client.ErrDenied) {
			status = http.StatusForbidden
		}
		http.Error(w, err.Error(), status)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Printf("%-8s | %s answered %s %s\n", from, url, resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, 1<<20))
}

type callCmd struct {
	URL      string `required:"" help:"https URL to POST to."`
	ID       string `required:"" help:"The SPIFFE ID the server must prove."`
	CABundle string `name:"ca-bundle" type:"existingfile" help:"Trust bundle (PEM); not needed with --state."`
	State    string `type:"existingdir" help:"Present this workload's certificate (mTLS)."`
	Token    string `help:"Bearer token to send."`
}

func (k callCmd) Run(ctx context.Context) error {
	id, err := spiffeid.FromString(k.ID)
	if err != nil {
		return err
	}
	tr := &http.Transport{}
	if k.State != "" {
		c, err := client.New(ctx, client.Config{StateDir: k.State, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		defer c.Close()
		tr.TLSClientConfig = c.ClientTLSConfig(id)
	} else {
		bundle, err := x509bundle.Load(id.TrustDomain(), k.CABundle)
		if err != nil {
			return err
		}
		tr.TLSClientConfig = tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(id))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.URL, nil)
	if err != nil {
		return err
	}
	if k.Token != "" {
		req.Header.Set("Authorization", "Bearer "+k.Token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("%s %s", resp.Status, body)
	if h := resp.Header.Get("WWW-Authenticate"); h != "" {
		fmt.Printf("WWW-Authenticate: %s\n", h)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("refused: %s", resp.Status)
	}
	return nil
}
