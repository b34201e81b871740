package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sigil-dev/sigil/hsm"
	"github.com/sigil-dev/sigil/internal/tokens"
	"github.com/sigil-dev/sigil/signer"
)

// MaxOAuthForm bounds the body of a token, introspection or revocation
// request: two tokens of at most signer.MaxTokenSize and their
// parameters fit with room to spare.
const MaxOAuthForm = 64 << 10

// Revocation feed timing unless Server.FeedHeartbeat and
// Server.FeedWriteTimeout say otherwise: a comment line every
// feedHeartbeat keeps proxies from closing an idle stream; each write must
// finish within feedWriteTimeout.
const (
	feedHeartbeat    = 15 * time.Second
	feedWriteTimeout = 10 * time.Second
)

// feedTiming returns the feed's heartbeat interval and write timeout.
func (s *Server) feedTiming() (heartbeat, writeTimeout time.Duration) {
	heartbeat, writeTimeout = feedHeartbeat, feedWriteTimeout
	if s.FeedHeartbeat > 0 {
		heartbeat = s.FeedHeartbeat
	}
	if s.FeedWriteTimeout > 0 {
		writeTimeout = s.FeedWriteTimeout
	}
	return heartbeat, writeTimeout
}

// oauthRoutes serves the token service when s.Tokens is set:
//
//	POST /oauth2/token       RFC 6749 / RFC 8693, mTLS (tls_client_auth)
//	POST /oauth2/introspect  RFC 7662, mTLS
//	POST /oauth2/revoke      RFC 7009, mTLS
//	GET  /.well-known/oauth-authorization-server   RFC 8414
//	GET  /jwks.json          RFC 7517
//	GET  /v1/revocations     Server-Sent Events of RFC 8417 SETs, mTLS;
//	                         streams limited per identity (429) and in all (503)
//
// POST bodies are application/x-www-form-urlencoded, at most
// MaxOAuthForm bytes; parameters in the URL query are ignored. Errors are
// RFC 6749 §5.2 JSON, {"error", "error_description"}: 401 for
// invalid_client, 413 for an oversized body, 503 with Retry-After when the
// operation could not be recorded or the key cannot sign, 400 otherwise.
// Every answer carries Cache-Control: no-store.
func (s *Server) oauthRoutes(mux *http.ServeMux) {
	if s.Tokens == nil {
		return
	}
	o := &oauth{Server: s, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sigil_oauth_requests_total",
		Help: "OAuth requests by endpoint and outcome (ok or the OAuth error code).",
	}, []string{"endpoint", "outcome"})}
	o.tokenOK = o.requests.WithLabelValues("token", "ok")
	o.streams = newStreamLimiter(s.FeedStreams, s.FeedStreamsPerIdentity, s.Registry)
	if s.Registry != nil {
		s.Registry.MustRegister(o.requests)
	}
	o.routes(mux)
}

// oauth is the Server's token service endpoints.
type oauth struct {
	*Server
	requests *prometheus.CounterVec
	tokenOK  prometheus.Counter // requests' token/ok, looked up once
	streams  *streamLimiter     // of the revocation feed
}

func (s *oauth) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST "+tokens.PathToken, s.token)
	mux.HandleFunc("POST "+tokens.PathIntrospect, s.introspect)
	mux.HandleFunc("POST "+tokens.PathRevoke, s.revoke)
	mux.HandleFunc("GET "+tokens.PathJWKS, s.jwks)
	mux.HandleFunc("GET "+tokens.PathRevocations, s.revocations)
	mux.HandleFunc("GET "+tokens.PathMetadata, s.metadata)
	if u, err := url.Parse(s.Tokens.Issuer()); err == nil && strings.Trim(u.Path, "/") != "" {
		// RFC 8414 §3: the well-known path goes before the issuer's path.
		mux.HandleFunc("GET "+tokens.PathMetadata+"/"+strings.Trim(u.Path, "/"), s.metadata)
	}
}

func (s *oauth) token(w http.ResponseWriter, r *http.Request) {
	form, ok := s.oauthForm(w, r, "token")
	if !ok {
		return
	}
	resp, err := s.Tokens.Token(r.Context(), peerCertificate(r), form)
	if err != nil {
		s.oauthFail(w, r, "token", err)
		return
	}
	s.tokenOK.Inc()
	writeTokenResponse(w, resp)
}

// Header values of a token response, shared by every response: net/http
// copies the header map before it writes it and never changes a value.
var (
	headerJSON    = []string{"application/json"}
	headerNoStore = []string{"no-store"}
	headerNoCache = []string{"no-cache"}
)

// writeTokenResponse writes a successful token response as writeJSON
// would, the same headers and the same body (encoding/json's, with its
// newline; see Response.AppendJSON), in one Write, and with the header
// values set without a new slice each. net/http sets Content-Length
// itself for a body written whole before the handler returns.
func writeTokenResponse(w http.ResponseWriter, resp *tokens.Response) {
	body := append(resp.AppendJSON(make([]byte, 0, len(resp.AccessToken)+256)), '\n')
	h := w.Header()
	h["Content-Type"], h["Cache-Control"], h["Pragma"] = headerJSON, headerNoStore, headerNoCache
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (s *oauth) introspect(w http.ResponseWriter, r *http.Request) {
	form, ok := s.oauthForm(w, r, "introspect")
	if !ok {
		return
	}
	tok, ok := s.tokenParam(w, r, "introspect", form)
	if !ok {
		return
	}
	in, err := s.Tokens.Introspect(r.Context(), peerCertificate(r), tok)
	if err != nil {
		s.oauthFail(w, r, "introspect", err)
		return
	}
	s.requests.WithLabelValues("introspect", "ok").Inc()
	writeJSON(w, http.StatusOK, in)
}

func (s *oauth) revoke(w http.ResponseWriter, r *http.Request) {
	form, ok := s.oauthForm(w, r, "revoke")
	if !ok {
		return
	}
	tok, ok := s.tokenParam(w, r, "revoke", form)
	if !ok {
		return
	}
	if err := s.Tokens.Revoke(r.Context(), peerCertificate(r), tok); err != nil {
		s.oauthFail(w, r, "revoke", err)
		return
	}
	s.requests.WithLabelValues("revoke", "ok").Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// oauthForm reads a form body: the right media type, at most
// MaxOAuthForm bytes, a client certificate. Parameters come from the body
// only.
func (s *oauth) oauthForm(w http.ResponseWriter, r *http.Request, endpoint string) (url.Values, bool) {
	fail := func(status int, code, desc string) (url.Values, bool) {
		s.requests.WithLabelValues(endpoint, code).Inc()
		oauthError(w, status, code, desc)
		return nil, false
	}
	if !formMediaType(r.Header.Get("Content-Type")) {
		return fail(http.StatusBadRequest, tokens.InvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	form, err := readForm(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, tokens.InvalidRequest, fmt.Sprintf("request body exceeds %d bytes", MaxOAuthForm))
		}
		return fail(http.StatusBadRequest, tokens.InvalidRequest, "malformed form body")
	}
	if peerCertificate(r) == nil {
		return fail(http.StatusUnauthorized, tokens.InvalidClient, "a client certificate is required: authenticate with the workload's X.509-SVID over mutual TLS (tls_client_auth)")
	}
	return form, true
}

// formBuffers hold request bodies while they are parsed; those of at most
// keptFormBuffer bytes are kept (an exchange's body is about 1.5 KB).
const keptFormBuffer = 16 << 10

var formBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readForm reads and parses the body of r, at most MaxOAuthForm bytes
// (else a *http.MaxBytesError), as r.ParseForm would but once: ParseForm
// parses into PostForm and then copies it, with the URL's query, into
// Form, which these endpoints do not read. The body is read into a pooled
// buffer and parsed from one string.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if r.Body == nil {
		return nil, errors.New("missing form body")
	}
	buf := formBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= keptFormBuffer { // one that grew for a large body is dropped
			buf.Reset()
			formBuffers.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxOAuthForm)); err != nil {
		return nil, err
	}
	return url.ParseQuery(buf.String())
}

// formMediaType reports whether a Content-Type is a form body's. The
// exact type, as clients send it, is answered without mime's parse, which
// allocates a map of parameters on every request.
func formMediaType(ct string) bool {
	const form = "application/x-www-form-urlencoded"
	if ct == form {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == form
}

// tokenParam reads the one token parameter of introspection and
// revocation; token_type_hint is optional and not needed.
func (s *oauth) tokenParam(w http.ResponseWriter, r *http.Request, endpoint string, form url.Values) (string, bool) {
	if len(form["token"]) != 1 || form.Get("token") == "" {
		s.requests.WithLabelValues(endpoint, tokens.InvalidRequest).Inc()
		oauthError(w, http.StatusBadRequest, tokens.InvalidRequest, "exactly one non-empty token parameter is required")
		return "", false
	}
	return form.Get("token"), true
}

func (s *oauth) jwks(w http.ResponseWriter, r *http.Request) {
	data, err := s.Tokens.JWKS()
	if err != nil {
		s.oauthFail(w, r, "jwks", err)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short enough that a key published for the rotation lead time is
	// fetched before it signs.
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Write(data)
}

func (s *oauth) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	json.NewEncoder(w).Encode(s.Tokens.Metadata())
}

// FeedHeadHeader names the response header of the revocation feed that
// holds the id of its latest event when the stream started.
const FeedHeadHeader = "Sigil-Feed-Head"

// revocations streams the revocation feed as Server-Sent Events: one
// event per revoked token, id the event's "<epoch>.<seq>" (send it back
// as Last-Event-ID to resume), data the signed SET; the FeedHeadHeader
// says where the feed stands. A resume point not on the feed (another
// epoch, ahead of the head) is 409: resynchronise from Last-Event-ID 0.
// Streams are limited per identity and in all (limit.go).
func (s *oauth) revocations(w http.ResponseWriter, r *http.Request) {
	release, err := s.streams.acquire(streamIdentity(peerCertificate(r)))
	if err != nil {
		s.streamRefused(w, r, err)
		return
	}
	defer release()
	sub, err := s.Tokens.Subscribe(r.Context(), peerCertificate(r), r.Header.Get("Last-Event-ID"))
	if err != nil {
		s.oauthFail(w, r, "revocations", err)
		return
	}
	defer sub.Close()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the server's ReadTimeout would end the stream
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set(FeedHeadHeader, sub.Head())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !s.sse(rc, w, "retry: 1000\n\n") {
		return
	}
	heartbeat, _ := s.feedTiming()
	for {
		ctx, cancel := context.WithTimeout(r.Context(), heartbeat)
		ev, err := sub.Next(ctx)
		cancel()
		var line string
		switch {
		case err == nil:
			line = fmt.Sprintf("id: %s\ndata: %s\n\n", ev.ID(), ev.SET)
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			line = ": keep-alive\n\n"
		default:
			s.Log.DebugContext(r.Context(), "revocation feed subscriber ends", "err", err)
			return
		}
		if !s.sse(rc, w, line) {
			return
		}
	}
}

// sse writes and flushes one piece of the stream within the write timeout,
// then clears the deadline: over HTTP/2 a deadline that passes resets the
// stream even with no write pending, which would cut an idle feed between
// two keep-alives.
func (s *oauth) sse(rc *http.ResponseController, w http.ResponseWriter, text string) bool {
	_, writeTimeout := s.feedTiming()
	_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := fmt.Fprint(w, text); err != nil {
		return false
	}
	if rc.Flush() != nil {
		return false
	}
	_ = rc.SetWriteDeadline(time.Time{})
	return true
}

// oauthFail answers err as an OAuth error.
func (s *oauth) oauthFail(w http.ResponseWriter, r *http.Request, endpoint string, err error) {
	status, code, desc := classifyOAuth(err)
	status, code, desc = s.unavailable(r.Context(), status, code, desc)
	log := s.Log.InfoContext
	if status >= 500 {
		log = s.Log.ErrorContext
	}
	log(r.Context(), "oauth request failed", "path", r.URL.Path, "status", status, "code", code, "err", err)
	s.requests.WithLabelValues(endpoint, code).Inc()
	if errors.Is(err, tokens.ErrNotRecorded) && s.metrics != nil {
		s.metrics.unrecorded.Inc()
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	oauthError(w, status, code, desc)
}

func classifyOAuth(err error) (status int, code, description string) {
	var oe *tokens.Error
	switch {
	case errors.As(err, &oe) && oe.Code == tokens.InvalidClient:
		return http.StatusUnauthorized, oe.Code, oe.Description
	case errors.As(err, &oe):
		return http.StatusBadRequest, oe.Code, oe.Description
	case errors.Is(err, tokens.ErrNotRecorded):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "the operation could not be recorded, so it did not take effect; retry later"
	case errors.Is(err, tokens.ErrResync):
		return http.StatusConflict, "invalid_request", "Last-Event-ID is not on this revocation feed (another epoch: the database was restored; or ahead of its head): resynchronise from Last-Event-ID 0"
	case errors.Is(err, tokens.ErrFeedUnavailable):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "the revocation feed is not available; retry later"
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, signer.ErrStale):
		return http.StatusServiceUnavailable, "temporarily_unavailable", "signing service unavailable; retry later"
	}
	return http.StatusInternalServerError, "server_error", "internal error"
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Pragma", "no-cache")
	writeError(w, status, code, description)
}
