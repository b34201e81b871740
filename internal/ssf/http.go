package ssf

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/internal/tokens"
)

// Routes adds the transmitter's endpoints to mux:
//
//	GET    /.well-known/ssf-configuration   metadata (public)
//	POST   /ssf/stream                      create a stream (201)
//	GET    /ssf/stream[?stream_id=ID]       the caller's streams, or one
//	DELETE /ssf/stream?stream_id=ID         delete one (204)
//	PATCH  /ssf/stream                      change some of a stream's properties (StreamUpdate)
//	PUT    /ssf/stream                      replace them
//	GET    /ssf/status?stream_id=ID         a stream's status
//	POST   /ssf/status                      {"stream_id", "status", "reason"}: set it
//	POST   /ssf/verify                      {"stream_id", "state"}: a verification event (204)
//	POST   /ssf/subjects:add                SubjectRequest: the subject's events again (200)
//	POST   /ssf/subjects:remove             SubjectRequest: no more events of the subject (204)
//	POST   /ssf/poll/ID                     RFC 8936 poll
//
// Every endpoint but the metadata takes an RFC 6750 bearer token in the
// Authorization header. Request bodies are JSON of at most MaxBody bytes;
// those of the update, status and subject endpoints may hold no field but
// theirs.
// fail, if not nil, answers internal errors (a store or HSM down);
// otherwise they are 500.
func (t *Transmitter) Routes(mux *http.ServeMux, fail func(http.ResponseWriter, *http.Request, error)) {
	h := &handler{t: t, fail: fail}
	mux.HandleFunc("GET "+PathConfiguration, h.metadata)
	mux.HandleFunc("POST "+PathStream, h.create)
	mux.HandleFunc("GET "+PathStream, h.read)
	mux.HandleFunc("DELETE "+PathStream, h.delete)
	mux.HandleFunc("PATCH "+PathStream, h.update(false))
	mux.HandleFunc("PUT "+PathStream, h.update(true))
	mux.HandleFunc("GET "+PathStatus, h.status)
	mux.HandleFunc("POST "+PathStatus, h.setStatus)
	mux.HandleFunc("POST "+PathVerify, h.verify)
	mux.HandleFunc("POST "+PathAddSubject, h.subjects(h.t.AddSubject, http.StatusOK))
	mux.HandleFunc("POST "+PathRemoveSubject, h.subjects(h.t.RemoveSubject, http.StatusNoContent))
	mux.HandleFunc("POST "+PathPoll+"{id}", h.poll)
}

type handler struct {
	t    *Transmitter
	fail func(http.ResponseWriter, *http.Request, error)
}

func (h *handler) metadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.t.Metadata())
}

func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	var req StreamConfig
	if !h.decode(w, r, &req) {
		return
	}
	c, err := h.t.CreateStream(r.Context(), bearer(r), peer(r), req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (h *handler) read(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("stream_id")
	cs, err := h.t.Streams(r.Context(), bearer(r), peer(r), id)
	if err != nil {
		h.error(w, r, err)
		return
	}
	if id != "" {
		writeJSON(w, http.StatusOK, cs[0])
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		h.error(w, r, badRequest("stream_id is required"))
		return
	}
	if err := h.t.DeleteStream(r.Context(), bearer(r), peer(r), id); err != nil {
		h.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) update(replace bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req StreamUpdate
		if !h.decodeStrict(w, r, &req) {
			return
		}
		c, err := h.t.UpdateStream(r.Context(), bearer(r), peer(r), req, replace)
		if err != nil {
			h.error(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	}
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		h.error(w, r, badRequest("stream_id is required"))
		return
	}
	st, err := h.t.Status(r.Context(), bearer(r), peer(r), id)
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) setStatus(w http.ResponseWriter, r *http.Request) {
	var req StreamStatus
	if !h.decodeStrict(w, r, &req) {
		return
	}
	st, err := h.t.SetStatus(r.Context(), bearer(r), peer(r), req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if !h.decode(w, r, &req) {
		return
	}
	if err := h.t.Verify(r.Context(), bearer(r), peer(r), req.StreamID, req.State); err != nil {
		h.error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// subjects answers a subject request with change, and status if it
// succeeds.
func (h *handler) subjects(change func(context.Context, string, *x509.Certificate, SubjectRequest) error, status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req SubjectRequest
		if !h.decodeStrict(w, r, &req) {
			return
		}
		if err := change(r.Context(), bearer(r), peer(r), req); err != nil {
			h.error(w, r, err)
			return
		}
		w.WriteHeader(status)
	}
}

func (h *handler) poll(w http.ResponseWriter, r *http.Request) {
	var req PollRequest
	if !h.decode(w, r, &req) {
		return
	}
	resp, err := h.t.Poll(r.Context(), bearer(r), peer(r), r.PathValue("id"), req)
	if err != nil {
		h.error(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// decode reads a JSON body of at most MaxBody bytes into v, answering 413
// for a larger one and 400 for one that is not the expected JSON.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	return h.decodeJSON(w, r, v, false)
}

// decodeStrict is decode that also refuses fields v does not have, and
// anything after the JSON value.
func (h *handler) decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	return h.decodeJSON(w, r, v, true)
}

func (h *handler) decodeJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) bool {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		h.error(w, r, &Error{Status: http.StatusUnsupportedMediaType, Code: "invalid_request", Description: "Content-Type must be application/json"})
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		h.error(w, r, &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "request body too large"})
		return false
	case err != nil:
		h.error(w, r, badRequest("cannot read the request body"))
		return false
	}
	if err := unmarshal(body, v, strict); err != nil {
		h.error(w, r, badRequest("the body is not the expected JSON: "+err.Error()))
		return false
	}
	return true
}

// error answers err: an *Error as it says, an invalid token 401 (RFC 6750
// §3.1), a canceled request nothing, anything else through fail.
func (h *handler) error(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
	case errors.Is(err, tokens.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token",
			"error_description": "a bearer token sigil issued for the transmitter's audience is required"})
	case errors.Is(err, context.Canceled):
	case h.fail != nil:
		h.fail(w, r, err)
	default:
		h.t.log.ErrorContext(r.Context(), "ssf: request failed", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
	}
}

// unmarshal decodes body into v; strict refuses unknown fields and
// trailing data.
func unmarshal(body []byte, v any, strict bool) error {
	if !strict {
		return json.Unmarshal(body, v)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// bearer returns the request's RFC 6750 bearer token, "" if none.
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func peer(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("ssf: write response", "err", err)
	}
}
