// Package jsonhttp holds the JSON request and answer helpers shared by the
// agents' local HTTP APIs (internal/agent's token service and sidecar,
// internal/hostagent's socket).
package jsonhttp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/sigil-dev/sigil/api"
)

// Decode reads one JSON object of at most limit bytes, with no unknown
// member and nothing after it, into v, or answers 400 (413 when too
// large) and returns false.
func Decode(w http.ResponseWriter, r *http.Request, v any, limit int) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	switch {
	case err != nil:
		Fail(w, http.StatusBadRequest, "invalid_request", "read body: "+err.Error())
		return false
	case len(body) > limit:
		Fail(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("body larger than %d bytes", limit))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		Fail(w, http.StatusBadRequest, "invalid_request", "body: "+err.Error())
		return false
	}
	if dec.More() {
		Fail(w, http.StatusBadRequest, "invalid_request", "body: data after the JSON object")
		return false
	}
	return true
}

// Fail answers an OAuth-style error: {"error": code, "error_description": desc}.
func Fail(w http.ResponseWriter, status int, code, desc string) {
	Write(w, status, api.Error{Code: code, Description: desc})
}

// Write answers v as JSON, not to be cached.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
