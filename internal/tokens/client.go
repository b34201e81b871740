package tokens

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/sigil-dev/sigil/identity"
	"github.com/sigil-dev/sigil/internal/device"
	"github.com/sigil-dev/sigil/internal/store"
	"github.com/sigil-dev/sigil/signer"
	"github.com/sigil-dev/sigil/token"
)

// client is an authenticated caller: its verified X.509-SVID and the
// record of its issuance.
type client struct {
	cert   *x509.Certificate
	record store.Certificate
	caller signer.Caller
}

// authenticate checks that cert, the TLS-verified client certificate, is
// one this server issued and has not revoked (RFC 8705 tls_client_auth:
// the client is its certificate). TLS has checked the chain to our root
// and the validity period; the store adds revocation and that the exact
// certificate was issued here. Failures are invalid_client.
func (s *Service) authenticate(ctx context.Context, cert *x509.Certificate) (*client, error) {
	if cert == nil {
		return nil, invalidClient("a client certificate is required: authenticate with the workload's X.509-SVID over mutual TLS (tls_client_auth)")
	}
	serial := device.Serial(cert)
	rec, err := s.cfg.Store.Certificate(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.log.WarnContext(ctx, "tokens: client certificate not on record", "serial", serial)
		return nil, invalidClient("the client certificate was not issued by this server")
	case err != nil:
		return nil, fmt.Errorf("tokens: look up client certificate %s: %w", serial, err)
	case !bytes.Equal(rec.DER, cert.Raw):
		s.log.WarnContext(ctx, "tokens: client certificate differs from the one on record", "serial", serial)
		return nil, invalidClient("the client certificate was not issued by this server")
	case rec.RevokedAt != nil:
		s.log.InfoContext(ctx, "tokens: revoked client certificate", "serial", serial, "spiffe_id", rec.SPIFFEID, "reason", rec.RevocationReason)
		return nil, invalidClient("the client certificate has been revoked: renew or enroll again")
	case !s.now().Before(rec.NotAfter):
		return nil, invalidClient("the client certificate has expired: renew or enroll again")
	case len(cert.URIs) != 1 || cert.URIs[0].String() != rec.SPIFFEID:
		return nil, invalidClient("the client certificate does not carry exactly the SPIFFE ID on record")
	}
	if _, err := identity.Workload(rec.SPIFFEID); err != nil {
		s.log.WarnContext(ctx, "tokens: client certificate's SPIFFE ID breaks the SPIFFE ID standard", "serial", serial, "err", err)
		return nil, invalidClient("the client certificate's SPIFFE ID is not a valid workload ID (SPIFFE ID standard): enroll again with a valid identity")
	}
	return &client{cert: cert, record: rec, caller: signer.Caller{
		ID: rec.SPIFFEID, Thumbprint: token.Thumbprint(cert.Raw),
		Evidence: rec.EvidenceDigest, Policy: rec.PolicyVersion,
	}}, nil
}

// maxCachedClients bounds the clients [Service.authenticateIssuing]
// remembers: about one per TLS connection in use.
const maxCachedClients = 1024

// clientCache remembers the clients authenticated from each client
// certificate object. crypto/tls parses the peer's certificate once per
// connection, so every request on a kept-alive connection presents the same
// *x509.Certificate, and a new connection a new one: an entry is, in
// effect, the connection's authentication, which only the certificate's
// revocation can change (everything else authenticate checks is fixed in
// the certificate and its record, or, like expiry, checked again).
type clientCache = lru.Cache[*x509.Certificate, *client]

func newClientCache() *clientCache {
	c, err := lru.New[*x509.Certificate, *client](maxCachedClients)
	if err != nil {
		panic("tokens: client cache: " + err.Error()) // only for a size <= 0
	}
	return c
}

// authenticateIssuing is authenticate for requests that issue a token,
// done once per certificate object (per TLS connection) rather than once
// per request. It skips the store's revocation check on later requests:
// such a request issues nothing unless InsertToken records the token bound
// (cnf) to this certificate, which fails with store.ErrCertificateRevoked,
// inside the writing transaction, if the certificate has been revoked
// meanwhile (see [Service.record]). The caller must call forget when that
// happens, or on any failure to record.
func (s *Service) authenticateIssuing(ctx context.Context, cert *x509.Certificate) (*client, error) {
	if cert != nil {
		if c, ok := s.clients.Get(cert); ok {
			if !s.now().Before(c.record.NotAfter) {
				s.clients.Remove(cert)
				return nil, invalidClient("the client certificate has expired: renew or enroll again")
			}
			return c, nil
		}
	}
	c, err := s.authenticate(ctx, cert)
	if err == nil {
		s.clients.Add(cert, c)
	}
	return c, err
}

// forget drops cert's cached authentication: the next request with it is
// checked against the store again.
func (s *Service) forget(cert *x509.Certificate) {
	if cert != nil {
		s.clients.Remove(cert)
	}
}

func (s *Service) admin(c *client) bool { return s.admins[c.caller.ID] }
