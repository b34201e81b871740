// Package verify is sigil's library for resource servers: it verifies the
// access tokens sigild issues and binds them to the caller's TLS client
// certificate.
//
//	v, err := verify.New(ctx, verify.Config{
//		Issuer:   "https://sigil.example",
//		Audience: "spiffe://example.org/orders",
//		JWKSURL:  "https://sigil.example/jwks.json",
//		Client:   mtlsClient,
//		Revocation: verify.Revocation{FeedURL: "https://sigil.example/v1/revocations"},
//	})
//	mux.Handle("/orders", v.Middleware(verify.RequireScope("orders:read", orders)))
//	// in orders: c, _ := verify.FromContext(r.Context()); c.Subject, c.ActChain()
//	// c.IsUser(): c.Subject is a user of the IdP c.SubjectIssuer
//	// c.IsWorkload(): c.Subject is a workload's SPIFFE ID
//
// # Verification
//
// Verify checks, in order: at most MaxTokenSize bytes and exactly two
// dots; a protected header without jwk, jku, x5u, x5c, crit or b64 (they
// are refused, never ignored), typ at+jwt, alg in Config.Algorithms and
// a kid found in the issuer's JWKS (fetched again on an unknown kid at
// most once per MinRefresh; keys never come from the token); the
// signature over the token's signing input as received, by that key with
// its alg (the JWKS key's alg must equal the header's, and ES256 keys
// must be P-256, ES384 keys P-384, PS256 keys RSA of at least 2048 bits;
// token.ParseJWKS reads the set); iss, aud containing Config.Audience,
// exp, nbf and iat with Config.Leeway, a lifetime of at most
// MaxLifetime, a jti; a subject that is a workload or an IdP's user and
// actors that are all workloads (token.Claims.CheckIdentities: a token
// naming anything else is refused); cnf.x5t#S256 equal to the SHA-256
// thumbprint of the peer certificate (RFC 8705), so a token presented
// without the certificate it is bound to is refused; that the feed has
// not revoked that certificate (a revoked client certificate fails the
// request, with every token bound to it); and that the jti is not
// revoked.
//
// VerifyTxn checks a transaction token (draft-ietf-oauth-transaction-
// tokens-10) the same way but for what differs: typ txntoken+jwt (so
// neither kind passes as the other), aud containing Config.TrustDomain,
// txn, sub, scope and req_wl required, at most MaxTxnLifetime long, and no
// binding to the peer, for it reaches a workload through others.
// Middleware checks a Txn-Token header with it when there is one
// (TxnFromContext; RequireTxn for handlers that need one).
//
// Failures wrap ErrInvalidToken (answer 401 invalid_token) and a fixed,
// non-leaky reason that is the error_description; the precise cause is
// logged at debug level with the jti, never the token.
// ErrRevocationUnknown means revocation cannot be checked: answer 503.
//
// # Revocation
//
// With Revocation.FeedURL, New starts a client of sigild's revocation feed
// (Server-Sent Events, one RFC 8417 Security Event Token per revoked
// token or certificate, typ secevent+jwt, signed by a key of the same
// JWKS; a certificate is named by its x5t#S256, and its SET's sub_id is
// the RFC 9493 uri "ni:///sha-256;<x5t#S256>"). It starts
// from the first event (Last-Event-ID 0), resumes after the last event it
// applied (ids are "<epoch>.<seq>"), and reconnects with jittered
// exponential backoff. When the feed is not the one it followed, it reads
// it again from the first event at once, keeping every revocation it
// learned: the server refuses the resume point (409 Conflict), its
// Sigil-Feed-Head names another epoch (its database was restored) or a
// head behind the last event applied, or an event of another epoch or not
// after the last one arrives. A SET that
// does not verify ends the connection without being skipped. A revoked
// jti is remembered until MaxLifetime after the revocation, or the token's
// own expiry once a token with that jti has been seen; a revoked
// certificate until it expires.
//
// CheckCertificate and VerifyConnection refuse a peer certificate the feed
// has revoked: set VerifyConnection on a tls.Config (client.Client's TLS
// configs do), where it runs on resumed sessions too. A certificate has no
// introspection to fall back on: while the feed has been down longer than
// MaxStaleness they refuse every certificate (ErrRevocationUnknown).
//
// While the feed is down, Verify asks Revocation.Introspect when it is
// set. Without it, or when introspection fails, tokens are accepted until
// the feed has been down for MaxStaleness, and refused with
// ErrRevocationUnknown after. With Introspect alone every token is
// introspected. With neither, revocation is not checked.
package verify
