// Package client is the workload side of sigil: it enrolls a TPM-backed
// identity, keeps it renewed, and attaches tokens to outgoing calls.
//
// # Enrollment
//
// Enroll runs the protocol of DESIGN "Enrollment": it sends the EK and a new
// AK, activates the server's credential, creates an application key
// certified by the AK over the server's nonce, quotes the PCRs with the event
// log, and sends a CSR signed by the TPM key. The private key never leaves
// the TPM; the state directory holds TPM-encrypted blobs, the key as a TSS2
// PEM for OpenSSL's tpm2 provider, and the certificate chain.
//
// # A service in a few lines
//
// New opens the enrolled workload (or enrolls it first, with
// Config.Enroll) and renews its X.509-SVID in the background after half its
// lifetime, with a fresh quote by the same AK for the same TPM key,
// retrying with jittered backoff and serving the current certificate until
// the next one is in hand:
//
//	c, err := client.New(ctx, client.Config{StateDir: "/var/lib/sigil/orders"})
//	defer c.Close()
//
// Serving mTLS, with tokens verified by package verify:
//
//	v, err := c.Verifier(ctx) // issuer, audience = this workload, JWKS, revocation feed
//	srv := &http.Server{
//		TLSConfig: c.ServerTLSConfig(tlsconfig.AuthorizeMemberOf(c.ID().TrustDomain())),
//		Handler:   v.Middleware(verify.RequireScope("orders:write", orders)),
//	}
//
// Calling another workload, with a token for it:
//
//	payments := c.HTTPClient(paymentsID, "payments:charge")
//	req, _ := http.NewRequestWithContext(r.Context(), "POST", paymentsURL, body)
//	resp, err := payments.Do(req)
//
// With r.Context() of a request verify's Middleware accepted, the token is
// exchanged for the caller's (RFC 8693): the call is made on the subject's
// behalf, the act claim names the chain, and the scope only narrows. For a
// token from another issuer, such as a user's IdP token at the edge, say so
// with WithSubjectToken. Tokens are bound to the certificate the call
// presents (cnf x5t#S256): a copy of one is useless without the TPM. A
// transaction token (Client.TxnToken) goes along in the Txn-Token header
// under WithTxnToken, and the one an incoming request carried is passed
// on down the call chain.
//
// The TLS configs (ServerTLSConfig, ClientTLSConfig, and Transport's)
// refuse a peer whose certificate sigild has revoked, as its revocation
// feed says, on every handshake, resumed sessions included: a disabled
// device is cut off within a second, over mTLS as with its tokens. They
// follow the feed through the Client's one Verifier, started when a TLS
// config is first made.
// examples/showcase is three such services.
//
// # Errors
//
// errors.Is(err, ErrDenied): the policy or the token rules refused; do not
// retry as is. errors.Is(err, ErrUnavailable): sigild, its HSM or its store
// is unavailable or unreachable; retry later. No error or log line of this
// package contains a whole token.
package client
