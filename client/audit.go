package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/api"
	"github.com/sigil-dev/sigil/audit"
)

// AuditSource reads a sigild's audit log over HTTPS, for `sigil audit
// verify`. It trusts nothing it reads: the auditor verifies signatures,
// hashes and consistency itself. Checkpoints are public; entries are
// served only to an identity in sigild's audit.readers (AuditSource of an
// enrolled Workload).
type AuditSource struct {
	server string
	hc     *http.Client
}

// NewAuditSource returns an anonymous source for the server at base, whose
// TLS certificate must chain to a root in caBundle (PEM): it reads
// checkpoints, and entries only from a server that lets anyone read them.
func NewAuditSource(base string, caBundle []byte) (*AuditSource, error) {
	roots, err := pool(caBundle)
	if err != nil {
		return nil, err
	}
	return &AuditSource{server: strings.TrimSuffix(base, "/"), hc: newHTTPClient(roots, nil)}, nil
}

// AuditSource reads the audit log of the server at base (the workload's
// own server if empty) as the workload, over mTLS: the server serves
// entries if the workload's SPIFFE ID is in its audit.readers.
func (w *Workload) AuditSource(base string) *AuditSource {
	if base == "" {
		base = w.State().Server
	}
	return &AuditSource{server: strings.TrimSuffix(base, "/"), hc: w.HTTPClient()}
}

// Checkpoint returns the latest signed checkpoint.
func (s *AuditSource) Checkpoint(ctx context.Context) ([]byte, error) {
	return s.get(ctx, api.PathAuditCheckpoint)
}

// Entries returns entries [start, end), fetched in pages.
func (s *AuditSource) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out [][]byte
	for start < end {
		stop := min(end, start+api.MaxAuditEntries)
		var page api.AuditEntries
		if err := s.getJSON(ctx, fmt.Sprintf("%s?start=%d&end=%d", api.PathAuditEntries, start, stop), &page); err != nil {
			return nil, err
		}
		if uint64(len(page.Entries)) != stop-start {
			return nil, fmt.Errorf("client: asked for %d audit entries from %d, got %d", stop-start, start, len(page.Entries))
		}
		out = append(out, page.Entries...)
		start = stop
	}
	return out, nil
}

// Covered reports whether the latest checkpoint covers every entry the
// server holds: the server has no entry at the checkpoint's size. It needs
// a source that may read entries.
func (s *AuditSource) Covered(ctx context.Context) (bool, error) {
	note, err := s.Checkpoint(ctx)
	if err != nil {
		return false, err
	}
	cp, err := audit.PeekCheckpoint(note)
	if err != nil {
		return false, err
	}
	_, err = s.get(ctx, fmt.Sprintf("%s?start=%d&end=%d", api.PathAuditEntries, cp.Size, cp.Size+1))
	var answer *ServerError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &answer) && answer.Status == http.StatusNotFound:
		return true, nil
	}
	return false, err
}

func (s *AuditSource) getJSON(ctx context.Context, path string, v any) error {
	data, err := s.get(ctx, path)
	if err != nil {
		return err
	}
	return decodeStrict(data, v)
}

func (s *AuditSource) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.server+path, nil)
	if err != nil {
		return nil, err
	}
	return roundTrip(s.hc, req, maxAuditResponse)
}

// maxAuditResponse bounds one page of entries (enrollments carry evidence).
const maxAuditResponse = 64 << 20
