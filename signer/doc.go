// Package signer is the token library of sigil's token service: signing
// keys with rotation (KeySet), minting (Minter), verification (Verifier)
// and the OAuth 2.0 token exchange rules (Rules). It has no HTTP and no
// policy; internal/tokens runs it as the service. The wire types (claims,
// act, cnf, JWKS reading, the certificate thumbprint) are package token's.
//
// Keys come from a KeySource as crypto.Signers with their metadata
// (KeyInfo: name, version, kid, alg); the KeySet adds each version's
// validity window (KeyState). signer never sees where keys live:
// internal/hsmkeys adapts the HSM.
//
//	keys, _ := signer.NewKeySet(hsmkeys.New(h), "jwt", store, signer.WithLead(10*time.Minute), signer.WithRetain(time.Hour))
//	_ = keys.Refresh(ctx)              // then keys.Run(ctx, time.Minute) in the background
//	mint, _ := signer.NewMinter(issuer, keys)
//	verify, _ := signer.NewVerifier(issuer, keys, signer.WithExternalIssuers(idp))
//
//	sub, err := verify.Verify(ctx, subjectToken, caller.ID)
//	c, err := rules.Exchange(time.Now(), signer.Request{Caller: caller, Subject: sub, ...})
//	// the service asks policy about c, then:
//	m, err := mint.AccessToken(ctx, *c) // record m.Claims and m.KID (jti, act, aud, scope, exp, cnf), then answer
//
// # Access tokens (RFC 9068)
//
// A compact JWS with header {"alg", "kid", "typ": "at+jwt"}; alg is the
// key's ES256 (default), ES384 or PS256 and kid its RFC 7638 thumbprint.
// Claims:
//
//	iss, sub, aud (always an array), iat, nbf, exp, jti (a millisecond time and 96 random bits, base64url: NewID)
//	client_id       the client the token was issued to (the caller's SPIFFE ID)
//	scope           space-separated
//	cnf             {"x5t#S256": base64url(SHA-256(caller certificate DER))} (RFC 8705)
//	act             {"sub": caller, "act": {"sub": previous caller, ...}} (RFC 8693 §4.1)
//	sigil_evidence  the caller's attestation evidence digest
//	sigil_policy    the policy version that admitted the caller
//	sigil_sub_iss   the external issuer that vouched for sub, if any
//	sub_id          RFC 9493: {"format":"uri","uri":sub} for a workload, {"format":"iss_sub","iss":sigil_sub_iss,"sub":sub} for a user
//
// Minter signs only claims whose subject is a workload (a SPIFFE ID) or an
// external issuer's user, and whose actors are all workloads
// (token.Claims.CheckIdentities).
//
// # Transaction tokens
//
// draft-ietf-oauth-transaction-tokens-10: typ "txntoken+jwt", the same
// claims plus txn (transaction id), req_wl (the requesting workload), tctx
// and rctx (JSON objects). Rules.Transaction decides them: the audience is
// the trust domain alone, the scope narrows and may not be empty, the
// lifetime is at most MaxTxnLifetime, and a replacement (a transaction
// token as the subject) keeps txn, tctx and rctx.
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
// A KeySet holds the versions of one key name on its KeySource. A new
// version is published in JWKS when first seen and signs Lead later; the
// previous version stops signing then and stays published for Retain
// plus the leeway, Retain being the longest token lifetime (Minter
// refuses longer ones). "First seen" is a time recorded once per key in a
// SeenStore that all replicas share, so every replica computes the same
// schedule from the same data; replicas must refresh more often than
// Lead, and a KeySet that has not refreshed within Lead refuses to sign.
// The lowest version on the source signs from its first sighting: with
// nothing published before it, there is nothing to lead.
//
// KeySet.Sign signs other statements under the same keys and the same
// choice of version, stale guard included: the revocation feed's events
// (typ secevent+jwt).
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
// an unknown kid); signature with the standard library
// (token.VerifySignature, for the allow-listed alg); then iss, sub, aud containing the expected audience, and
// exp, nbf, iat with a leeway (30 s). Our own tokens must name only
// identities we issue (token.Claims.CheckIdentities). An external token's
// claims must be unique JSON members; its sigil_*, cnf, client_id and txn
// claims are ignored; one with an act claim, in any letter case, is
// refused, since only our own exchanges add actors; its subject must pass
// token.CheckExternalSubject (printable ASCII, no surrounding spaces or
// escape characters, never a SPIFFE ID in any reading) and its scope be
// RFC 6749 scope tokens separated by single spaces. Errors
// are *TokenError: ErrMalformed (the token endpoint answers
// invalid_request) or ErrInvalid (also invalid_request, RFC 8693 §2.2.2), with a fixed reason;
// the precise cause is logged. Tokens are never logged.
//
// # Exchange rules
//
// Rules.Exchange and Rules.ClientCredentials are pure: the request,
// verified claims and a clock reading in, the new token's claims or a
// *RuleError out, whose Kind (ErrRequest, ErrClient, ErrGrant, ErrTarget,
// ErrScope) the token service maps to an OAuth error code and whose
// Reason is the error_description. Nothing widens: the caller must be in
// the subject token's aud (ErrGrant), scope narrows (ErrScope), the
// lifetime is capped by the subject token's expiry and MaxLifetime, act
// nests the previous chain under the caller up to MaxActDepth actors, and
// the new token is bound to the caller's certificate. A delegation chain
// already at the limit is ErrGrant: the defect is the subject token's (it
// cannot be delegated further), as with an expired one. An actor_token
// that is not the caller's own (sub and cnf) is ErrGrant. A missing
// audience is ErrRequest: every token is audience-restricted. Which
// audiences and scopes policy permits is not a rule here: the service
// asks policy about the claims Rules returns.
package signer
