// Package signer is the token library of sigil's token service: HSM signing
// keys with rotation (KeySet), minting (Minter), verification (Verifier)
// and the OAuth 2.0 token exchange rules (Rules). It has no HTTP; the
// service wires it to /oauth2/token, /oauth2/introspect and /jwks.json.
//
//	keys, _ := signer.NewKeySet(h, "jwt", store, signer.WithLead(10*time.Minute), signer.WithRetain(time.Hour))
//	_ = keys.Refresh(ctx)              // then keys.Run(ctx, time.Minute) in the background
//	mint, _ := signer.NewMinter(issuer, keys)
//	verify, _ := signer.NewVerifier(issuer, keys, signer.WithExternalIssuers(idp))
//
//	sub, err := verify.SubjectToken(ctx, form.SubjectToken, form.SubjectTokenType, caller.ID)
//	c, err := rules.Exchange(time.Now(), signer.Request{Caller: caller, Subject: sub, ...})
//	tok, signed, err := mint.AccessToken(ctx, *c) // record signed (jti, act, aud, scope, exp, cnf), then answer
//
// # Access tokens (RFC 9068)
//
// A compact JWS with header {"alg", "kid", "typ": "at+jwt"}; alg is the
// key's ES256 (default), ES384 or PS256 and kid its RFC 7638 thumbprint.
// Claims:
//
//	iss, sub, aud (always an array), iat, nbf, exp, jti (128 random bits, base64url)
//	client_id       the client the token was issued to (the caller's SPIFFE ID)
//	scope           space-separated
//	cnf             {"x5t#S256": base64url(SHA-256(caller certificate DER))} (RFC 8705)
//	act             {"sub": caller, "act": {"sub": previous caller, ...}} (RFC 8693 §4.1)
//	sigil_evidence  the caller's attestation evidence digest
//	sigil_policy    the policy version that admitted the caller
//	sigil_sub_iss   the external issuer that vouched for sub, if any
//
// # Transaction tokens
//
// draft-ietf-oauth-transaction-tokens: typ "txntoken+jwt", the same
// claims plus txn (transaction id), tctx and rctx (JSON objects). Scope,
// audience, lifetime and act rules are those of access tokens.
//
// # Reference tokens
//
// NewReference gives an opaque handle (256 random bits, base64url, 43
// characters, no dots, so never mistaken for a JWT) and its digest,
// base64url(SHA-256(handle)). Only the digest is stored; introspection
// looks the record up by ReferenceDigest of the presented handle.
//
// # Keys and rotation
//
// A KeySet holds the versions of one HSM key name. A new version is
// published in JWKS when first seen and signs Lead later; the previous
// version stops signing then and stays published for Retain plus the
// leeway, Retain being the longest token lifetime (Minter refuses longer
// ones). "First seen" is a time recorded once per key in a SeenStore that
// all replicas share, so every replica computes the same schedule from the
// same data; replicas must refresh more often than Lead, and a KeySet that
// has not refreshed within Lead refuses to sign. The lowest version on the
// token signs from its first sighting: with nothing published before it,
// there is nothing to lead.
//
// # Verification
//
// Verifier accepts our tokens (keys: the KeySet's published ones,
// algorithms ES256, ES384, PS256) and configured external issuers' (their
// JWKS, their algorithm allow-list, typ list and claim mapping). In order:
// at most MaxTokenSize bytes; exactly two dots (five parts, JWE, is
// refused); base64url and JSON objects without duplicate members; headers
// jwk, jku, x5u, x5c, crit and b64 are refused, never ignored; iss names a
// configured issuer; typ is the expected one; alg is in the issuer's
// allow-list (never none or HS*) and matches the key; kid names a known
// key (an external issuer's keys are fetched again at a bounded rate for
// an unknown kid); signature through go-jose ParseSignedCompact with the
// allow-list; then iss, sub, aud containing the expected audience, and
// exp, nbf, iat with a leeway (30 s). An external token's sigil_*, cnf and
// txn claims are ignored, and its subject may not be a SPIFFE ID. Errors
// are *TokenError: ErrMalformed (answer invalid_request) or ErrInvalid
// (invalid_grant), with a fixed reason; the precise cause is logged.
// Tokens are never logged.
//
// # Exchange rules
//
// Rules.Exchange and Rules.ClientCredentials are pure: the request,
// verified claims and a clock reading in, the new token's claims or an
// *Error out, with the OAuth codes of RFC 6749 §5.2, RFC 8693 §2.2.2 and
// RFC 8707. Nothing widens: the caller must be in the subject token's aud
// (invalid_grant), scope narrows (invalid_scope), every audience is
// permitted by policy (invalid_target), the lifetime is capped by the
// subject token's expiry and the policy maximum, act nests the previous
// chain under the caller up to MaxActDepth actors, and the new token is
// bound to the caller's certificate. A delegation chain already at the
// limit is invalid_grant: RFC 6749 §5.2 has no access_denied, and the
// defect is the subject token's (it cannot be delegated further), as with
// an expired one. An actor_token that is not the caller's own (sub and
// cnf) is invalid_grant. A missing audience is invalid_request: every
// token is audience-restricted.
package signer
