// Package token holds sigil's token wire types, once, for every side that
// reads or writes a token: signer (sigild's token library) mints and
// verifies them, verify (resource servers) verifies them, client binds
// them to its certificate, and internal/tokens records and introspects
// them. It has no key storage and no server code: the standard library,
// go-jose and go-spiffe's spiffeid only.
//
//   - Claims: the JWT claims of an RFC 9068 access token as sigil writes
//     them (iss, sub, aud, exp, nbf, iat, jti, client_id, scope, cnf, act,
//     sub_id, sigil_*), plus those of a transaction token (txn, req_wl, tctx, rctx).
//   - Actor: one level of an RFC 8693 act claim, nested.
//   - The two kinds of subject (subject.go): a workload (a SPIFFE ID) or
//     a user of an external issuer, whose identifier CheckExternalSubject
//     checks so that no reading of it is a SPIFFE ID; Claims.IsWorkload,
//     Claims.IsUser, Claims.CheckIdentities (only workloads act), and the
//     sub_id claim (RFC 9493) that says which kind in standard terms.
//   - Audience: aud, written as an array, read as a string or an array.
//   - NumericDate: a JWT time, whole seconds since the epoch.
//   - ParseJWKS: the public signing keys of an RFC 7517 JWK Set by kid,
//     each pinned to an algorithm of a caller-given allow-list.
//   - VerifySignature: a compact JWS's signature with the standard
//     library (ES256/384/512, PS256/384/512, RS256/384/512, EdDSA), for
//     signer.Verifier and verify.Verifier alike; the caller pins the
//     algorithm and finds the key.
//   - Thumbprint: the RFC 8705 x5t#S256 of a certificate, the cnf that
//     binds a token to its holder.
//
// Which claims a token must carry, and with which values, is the
// verifier's business (signer.Verifier, verify.Verifier); this package
// only reads and writes them.
package token
