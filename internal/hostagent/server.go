package hostagent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/client"
	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/jsonhttp"
)

type ctxKey struct{}

// callerOf is what connContext found about the connection's caller.
type callerOf struct {
	facts *api.Workload
	err   error
}

// connContext identifies the caller once per connection: the kernel's
// credentials are those of connect(2) and do not change.
func (a *Agent) connContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return context.WithValue(ctx, ctxKey{}, callerOf{err: errors.New("hostagent: not a Unix socket connection")})
	}
	f, err := a.hasher.peerFacts(uc)
	return context.WithValue(ctx, ctxKey{}, callerOf{facts: f, err: err})
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathHostSVID, a.svid)
	mux.HandleFunc("POST "+api.PathHostRenew, a.renew)
	mux.HandleFunc("POST "+api.PathHostSign, a.sign)
	for _, p := range []string{"/v1/token", "/v1/exchange", "/v1/revoke"} {
		mux.HandleFunc("POST "+p, a.tokens)
	}
	return mux
}

// caller is the request's caller, or an answer saying why there is none.
func caller(w http.ResponseWriter, r *http.Request) (*api.Workload, bool) {
	c, _ := r.Context().Value(ctxKey{}).(callerOf)
	if c.facts == nil {
		jsonhttp.Fail(w, http.StatusForbidden, "unidentified_caller", fmt.Sprintf("the agent could not identify the calling process: %v", c.err))
		return nil, false
	}
	return c.facts, true
}

// svid answers the caller's certificate and key for an identity, enrolling
// it first when the agent holds none for this caller.
func (a *Agent) svid(w http.ResponseWriter, r *http.Request) {
	facts, ok := caller(w, r)
	var req api.HostSVIDRequest
	if !ok || !decode(w, r, &req) || !checkIdentity(w, req.Identity) {
		return
	}
	unlock := a.lock(req.Identity)
	defer unlock()
	h := a.lookup(req.Identity)
	switch {
	case h == nil:
	case !sameProgram(h.owner.Facts, *facts):
		refuse(w, req.Identity, h.owner.Facts, *facts)
		return
	case h.owner.Facts.ExeSHA256 == facts.ExeSHA256:
		a.answer(w, h)
		return
	}
	// New, or the owner's program was upgraded (same uid, path and unit,
	// another executable): policy decides on the caller's facts.
	h, err := a.enroll(r.Context(), req.Identity, req.ServerAuth, facts)
	if err != nil {
		a.clientError(w, "enroll "+req.Identity, err)
		return
	}
	a.answer(w, h)
}

// renew renews the identity's certificate unless the agent holds a newer
// one than the caller has.
func (a *Agent) renew(w http.ResponseWriter, r *http.Request) {
	var req api.HostRenewRequest
	h, ok := a.owned(w, r, &req, func() string { return req.Identity })
	if !ok {
		return
	}
	if cur := h.c.Workload().State().Chain[0].SerialNumber.Text(16); req.Serial == "" || req.Serial == cur {
		if _, err := h.c.Renew(r.Context()); err != nil {
			a.clientError(w, "renew "+req.Identity, err)
			return
		}
	}
	a.answer(w, h)
}

// signHashes are the digests the agent signs.
var signHashes = map[string]crypto.Hash{
	crypto.SHA256.String(): crypto.SHA256, crypto.SHA384.String(): crypto.SHA384, crypto.SHA512.String(): crypto.SHA512,
}

// sign signs a digest with the identity's TPM key for its owner.
func (a *Agent) sign(w http.ResponseWriter, r *http.Request) {
	var req api.HostSignRequest
	h, ok := a.owned(w, r, &req, func() string { return req.Identity })
	if !ok {
		return
	}
	hash, known := signHashes[req.Hash]
	if !known || len(req.Digest) != hash.Size() {
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("hash %q with a %d-byte digest: want SHA-256, SHA-384 or SHA-512 and a digest of its size", req.Hash, len(req.Digest)))
		return
	}
	var opts crypto.SignerOpts = hash
	if req.PSS {
		opts = &rsa.PSSOptions{Hash: hash, SaltLength: req.PSSSaltLength}
	}
	sig, err := h.c.Workload().Signer().Sign(rand.Reader, req.Digest, opts)
	if err != nil {
		a.log.WarnContext(r.Context(), "sign with the TPM key failed", "spiffe_id", req.Identity, "err", err)
		jsonhttp.Fail(w, http.StatusBadGateway, "server_error", "the TPM did not sign: "+err.Error())
		return
	}
	jsonhttp.Write(w, http.StatusOK, api.HostSignature{Signature: sig})
}

// tokens serves the token service of the caller's identity: the one named
// by the Sigil-Identity header, or the only one the caller holds.
func (a *Agent) tokens(w http.ResponseWriter, r *http.Request) {
	facts, ok := caller(w, r)
	if !ok {
		return
	}
	id := r.Header.Get(api.HeaderHostIdentity)
	if id == "" {
		ids := a.heldBy(*facts)
		if len(ids) != 1 {
			jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("this process holds %d identities here; name one in the %s header", len(ids), api.HeaderHostIdentity))
			return
		}
		id = ids[0]
	}
	h := a.lookup(id)
	if h == nil {
		jsonhttp.Fail(w, http.StatusNotFound, "unknown_identity", "the agent holds no identity "+id+": ask for it at "+api.PathHostSVID+" first")
		return
	}
	if !sameProgram(h.owner.Facts, *facts) || h.owner.Facts.ExeSHA256 != facts.ExeSHA256 {
		refuse(w, id, h.owner.Facts, *facts)
		return
	}
	h.tokens.ServeHTTP(w, r)
}

// heldBy are the identities held for the program facts describes.
func (a *Agent) heldBy(facts api.Workload) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for id, h := range a.held {
		if sameProgram(h.owner.Facts, facts) && h.owner.Facts.ExeSHA256 == facts.ExeSHA256 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// owned decodes req and finds the identity it names, held for the caller.
func (a *Agent) owned(w http.ResponseWriter, r *http.Request, req any, id func() string) (*held, bool) {
	facts, ok := caller(w, r)
	if !ok || !decode(w, r, req) || !checkIdentity(w, id()) {
		return nil, false
	}
	h := a.lookup(id())
	if h == nil {
		jsonhttp.Fail(w, http.StatusNotFound, "unknown_identity", "the agent holds no identity "+id()+": ask for it at "+api.PathHostSVID+" first")
		return nil, false
	}
	if !sameProgram(h.owner.Facts, *facts) || h.owner.Facts.ExeSHA256 != facts.ExeSHA256 {
		refuse(w, id(), h.owner.Facts, *facts)
		return nil, false
	}
	return h, true
}

// sameProgram: the same uid, executable path and unit as the owner.
func sameProgram(owner, c api.Workload) bool {
	return owner.UID == c.UID && owner.Exe == c.Exe && owner.Unit == c.Unit
}

// refuse answers a caller that is not the identity's owner, saying who is.
func refuse(w http.ResponseWriter, id string, owner, c api.Workload) {
	jsonhttp.Fail(w, http.StatusForbidden, "workload_refused", fmt.Sprintf(
		"%s is held on this host for uid %d running %s (sha256 %.12s…) in unit %q; this process is uid %d running %s (sha256 %.12s…) in unit %q",
		id, owner.UID, owner.Exe, owner.ExeSHA256, owner.Unit, c.UID, c.Exe, c.ExeSHA256, c.Unit))
}

// answer writes the identity's current certificate and TSS2 key.
func (a *Agent) answer(w http.ResponseWriter, h *held) {
	st := h.c.Workload().State()
	out := api.HostSVID{
		SPIFFEID: st.SPIFFEID, KeyPEM: h.keyPEM, Server: st.Server, ExpiresAt: st.ExpiresAt,
		EvidenceDigest: st.EvidenceDigest, PolicyVersion: st.PolicyVersion,
	}
	for _, c := range st.Chain {
		out.Chain = append(out.Chain, c.Raw)
	}
	for _, c := range st.Bundle() {
		out.Bundle = append(out.Bundle, c.Raw)
	}
	jsonhttp.Write(w, http.StatusOK, out)
}

// clientError answers a failure of sigild or the TPM: sigild's refusals
// (a policy decision, a denied renewal) pass through with their words.
func (a *Agent) clientError(w http.ResponseWriter, op string, err error) {
	a.log.Warn("host agent: "+op+" failed", "err", err)
	var se *client.ServerError
	switch {
	case errors.As(err, &se) && se.Status < 500:
		jsonhttp.Fail(w, http.StatusForbidden, se.Code, op+": "+se.Description)
	case errors.Is(err, client.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		jsonhttp.Fail(w, http.StatusServiceUnavailable, "temporarily_unavailable", op+": "+err.Error())
	default:
		jsonhttp.Fail(w, http.StatusBadGateway, "server_error", op+": "+err.Error())
	}
}

// checkIdentity checks a requested SPIFFE ID's form.
func checkIdentity(w http.ResponseWriter, id string) bool {
	if _, err := identity.Workload(id); err != nil {
		jsonhttp.Fail(w, http.StatusBadRequest, "invalid_request", "identity: "+err.Error())
		return false
	}
	return true
}

// decode reads one JSON object of at most api.MaxHostRequest bytes, no
// unknown fields, nothing after it.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return jsonhttp.Decode(w, r, v, api.MaxHostRequest)
}
