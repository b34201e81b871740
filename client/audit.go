package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/sigil-dev/sigil/api"
)

// AuditSource reads a sigild's audit log over HTTPS, for `sigil audit
// verify`. It trusts nothing it reads: the auditor verifies signatures,
// hashes and consistency itself.
type AuditSource struct {
	server string
	hc     *http.Client
}

// NewAuditSource returns a source for the server at base, whose TLS
// certificate must chain to a root in caBundle (PEM).
func NewAuditSource(base string, caBundle []byte) (*AuditSource, error) {
	roots, err := pool(caBundle)
	if err != nil {
		return nil, err
	}
	return &AuditSource{server: strings.TrimSuffix(base, "/"), hc: newHTTPClient(roots, nil)}, nil
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
