package device

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/sigil-dev/sigil/internal/store"
)

// Certificates finds an issued certificate by its serial (Serial);
// store.Reader has it.
type Certificates interface {
	Certificate(ctx context.Context, serial string) (store.Certificate, error)
}

var _ Certificates = (store.Reader)(nil)

// ErrNotAuthenticated: the client certificate is missing, not one this
// server issued, revoked or expired. Answer 401; the caller renews or
// enrolls again.
var ErrNotAuthenticated = errors.New("client certificate not accepted")

// Authenticate checks that cert, a TLS-verified client certificate
// (chain to our root and validity already checked by TLS), is on record
// exactly as issued here, not revoked, not expired at now, and carries
// exactly the SPIFFE ID on record; it returns that record. A refusal wraps
// ErrNotAuthenticated and says why; a store failure is returned as is.
func Authenticate(ctx context.Context, certs Certificates, cert *x509.Certificate, now time.Time) (store.Certificate, error) {
	if cert == nil {
		return store.Certificate{}, fmt.Errorf("%w: none presented", ErrNotAuthenticated)
	}
	serial := Serial(cert)
	rec, err := certs.Certificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return rec, fmt.Errorf("%w: certificate %s was not issued here", ErrNotAuthenticated, serial)
	case err != nil:
		return rec, fmt.Errorf("device: look up certificate %s: %w", serial, err)
	case !bytes.Equal(rec.DER, cert.Raw):
		return rec, fmt.Errorf("%w: certificate %s differs from the one issued under that serial", ErrNotAuthenticated, serial)
	case rec.RevokedAt != nil:
		return rec, fmt.Errorf("%w: certificate %s is revoked (%s)", ErrNotAuthenticated, serial, rec.RevocationReason)
	case !now.Before(rec.NotAfter):
		return rec, fmt.Errorf("%w: certificate %s has expired", ErrNotAuthenticated, serial)
	case len(cert.URIs) != 1 || cert.URIs[0].String() != rec.SPIFFEID:
		return rec, fmt.Errorf("%w: certificate %s does not carry exactly the SPIFFE ID on record", ErrNotAuthenticated, serial)
	}
	return rec, nil
}
