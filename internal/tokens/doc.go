// Package tokens is sigild's token service: the logic of POST
// /oauth2/token, /oauth2/introspect and /oauth2/revoke, the RFC 8414
// metadata, and the revocation feed. It ties the token library (signer),
// policy, the store and the audit log together; package server adds HTTP.
//
//	svc, err := tokens.New(tokens.Config{Issuer: iss, Minter: mint, Keys: keys,
//		Verifier: verify, Attest: attestVerifier, Policy: engine, Store: st,
//		MaxLifetime: cfg.MaxTTL, DefaultTTL: cfg.DefaultTTL, MaxActDepth: cfg.MaxActDepth,
//		OpaqueAudiences: cfg.OpaqueAudiences, Admins: cfg.Admins, Log: log, Nudge: auditLog.Nudge})
//	go svc.Run(ctx) // the revocation feed
//
// # Clients
//
// Every call takes the caller's TLS-verified client certificate (RFC 8705
// tls_client_auth: the client is its X.509-SVID). It must be the very
// certificate this server issued under its serial, not revoked, not
// expired, with the SPIFFE ID on record; otherwise invalid_client (HTTP
// 401). A client_id parameter, if sent, must be that SPIFFE ID.
//
// # A token request, top to bottom
//
// Token runs these steps in this order (token.go); each returns what it
// found, typed, and oauthError (errors.go) alone turns a failure into the
// OAuth error the client gets (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707).
//
//  1. Parse. authenticate: the caller is its certificate (invalid_client,
//     above), looked up once per certificate object, that is per TLS
//     connection (authenticateIssuing, client.go); its revocation is
//     checked again, for every request, in step 5. parseTokenForm (form.go): grant_type client_credentials
//     gives a token for the caller itself, token exchange one acting for
//     the subject of subject_token; single-valued parameters may not
//     repeat (invalid_request), audience and resource may.
//  2. Facts. The facts of the caller's device (facts.go; evidence that
//     no longer verifies is access_denied). For an exchange, the subject
//     token and the actor token (subject.go): subject_token and its type
//     are required (invalid_request); a JWT of ours, of a configured
//     external issuer, or one of our reference tokens (subject_token_type
//     access_token) is verified by signer.Verifier, issued to the caller
//     (malformed or not acceptable: invalid_request, RFC 8693 §2.2.2).
//     One of ours must be on record and not revoked (invalid_request),
//     and becomes the new token's parent: revoking it
//     revokes the new one. An external issuer's (a user IdP's) is recorded
//     too, with the new token, as the root of its chains
//     (store.TokenExternal: sub, act, aud, scope and exp, named
//     "ext:"+base64url(SHA-256(header.payload)), never the token), and
//     becomes its parent alike; once revoked it is invalid_request. An
//     external token that carries act, or names a subject or scope sigil
//     does not accept, is invalid_request (see Delegation chains below). An
//     actor_token must be a JWT of ours for the token service (audience:
//     the issuer) held by the caller; an external issuer's is
//     invalid_request.
//  3. Decide. First signer.Rules, pure (audience and resource, scope
//     narrowing, lifetime, act nesting and depth, the actor token is the
//     caller's, cnf): a *signer.RuleError maps to invalid_request,
//     unauthorized_client, invalid_request (ErrGrant), invalid_target or
//     invalid_scope. Then policy (policy.go), about the claims the rules
//     produced, described below. Then the token's form (issue.go).
//  4. Mint (issue.go): signer.Minter signs a JWT and says with which kid;
//     a reference token is a random handle.
//  5. Record (issue.go): the token and its audit entry, in one
//     transaction, before it is returned. The token is bound (cnf) to the
//     caller's certificate, so InsertToken refuses it if the certificate
//     has been revoked meanwhile (invalid_client).
//
// Policy is asked (Cedar action "token" or "exchange") with the caller's
// SPIFFE ID, the policy version of its certificate and the facts of the
// device its certificate was issued on, derived by re-verifying the
// stored evidence (enrollment: attest Reverify; renewal: VerifyRenewal)
// and cached per certificate until it expires. Each audience is asked
// alone, each scope with it, and finally each audience with the token's
// whole scope set. A denied audience is invalid_target, a denied scope
// the client asked for invalid_scope (a scope inherited from the subject
// token, with no scope parameter, is dropped instead), and a denial by a
// matching forbid policy access_denied; the description names what was
// denied and the policy set version. The policy ids that permitted a
// token are logged with its jti and audited with it.
//
// The issued token's form follows requested_token_type:
//
//	absent, or ...:jwt        an RFC 9068 JWT access token (at+jwt)
//	...:access_token          a reference token: an opaque handle, resolved by introspection
//	...:txn_token             a transaction token (txntoken+jwt), token exchange only,
//	                          audience the trust domain (txn.go)
//
// except that a token for an audience in OpaqueAudiences is always a
// reference token (asking for a JWT or transaction token for one is
// invalid_target). Cedar's schema has no attribute for the form, so a
// permit for the request permits either form. issued_token_type is
// access_token, or jwt when that was asked, or txn_token; token_type is
// Bearer, N_A for a transaction token. Lifetimes are DefaultTTL, capped by
// MaxLifetime and the subject token's expiry.
//
// Every token is recorded (store.Token: jti, parent, sub, act, aud, scope,
// exp, cnf, kind, kid, and for a reference token only the SHA-256 of its
// handle) with its audit entry (token.issued or token.exchanged, key
// "jti:<jti>") in one transaction before it is returned. If that fails the
// token is dropped and the error is ErrNotRecorded (answer 503); a subject
// token revoked meanwhile is invalid_request.
//
// # Delegation chains: only what sigil saw
//
// Every actor in an act chain is a workload whose certificate this
// service saw at the exchange that added it: signer.Rules nests the
// caller over the subject token's act, and the subject token's act is
// either ours, built the same way, or absent. An external issuer's token
// that carries act (in any letter case) is refused by signer.Verifier, so
// no IdP can put a workload, or anyone, into a chain. It is refused
// rather than carried apart under a claim of sigil's own because a
// resource server reading the standard claims would then see the user
// acting through sigil's workloads alone, never learning that someone
// else acted for the user at the IdP: refusing neither forges a
// delegation nor hides one. The Verifier also checks every identity an
// external token brings into ours: the subject (token.CheckExternalSubject:
// printable ASCII, no surrounding spaces, no escape characters, never a
// SPIFFE ID in any reading), the scope (RFC 6749 scope tokens, so the new
// token's scope splits into what policy was asked about), and unique
// claim names; it reads no client_id of an external token. So in every
// token this service issues the subject is a workload or an IdP's user,
// told apart by sub alone, by sub_id (RFC 9493: "uri" or "iss_sub") and by
// sigil_sub_iss, and signer.Minter refuses to sign anything else
// (token.Claims.CheckIdentities), as does the reference token path.
//
// # Introspection
//
// RFC 7662 for a party in the token's audience or an admin. Anyone else
// gets {"active": false}, as for a token that is unknown, malformed, badly
// signed, expired, revoked, bound to a certificate that is revoked or not
// on record, or not ours, so that introspection is no oracle
// of a token's validity for those it was not meant for (RFC 7662 §4).
// Active answers carry sub, aud, scope, exp, iat, nbf, iss, jti,
// client_id, act, cnf, token_type, and sigil_token_kind; JWTs add their
// sigil_evidence, sigil_policy, sigil_sub_iss and txn claims.
//
// # Revocation
//
// RFC 7009 by the token's holder (cnf), its client, a party in its
// audience, or an admin; others get unauthorized_client. Revoking revokes
// every token exchanged from it, transitively, in one transaction with a
// token.revoked audit entry for each (key "revoked:<jti>"). Revoking a
// certificate (internal/device SetStatus, or store RevokeCertificate)
// revokes the tokens bound to it (cnf) and their subtrees the same way, in
// its own transaction, and InsertToken refuses to record a token for a
// certificate revoked meanwhile (invalid_client); a subject or actor token
// whose certificate is revoked is invalid_request like a revoked one. An external
// issuer's token that verifies as a subject token would (but in any of its
// audiences) may be revoked by a party in its audience, such as the edge
// service that exchanged a user's token, or an admin: its record, stored
// then if it was not, is revoked with its subtree, audited and published
// on the feed under its "ext:" name like any other. Recording an external
// token is not audited itself: the token.exchanged entry of the first
// token exchanged from it names it as parent_jti. A token that is none of
// ours or an external issuer's, has expired, or is already revoked is a
// success.
//
// # Revocation feed
//
// Subscribers (mTLS, any client certificate of ours) get every revocation
// of a token or a certificate as a Security Event Token (RFC 8417): typ
// secevent+jwt, signed by the key that signs access tokens now (so JWKS
// verifies it), with an events claim of EventTokenRevoked or
// EventCertificateRevoked (see SETClaims). Events come in the store's
// sequence order; the SSE id is the database's epoch and the sequence
// number (Event.ID), so Last-Event-ID resumes without loss, and a resume
// point the feed does not hold (another epoch: the database was restored;
// ahead of the head) is ErrResync, for the subscriber to read the feed
// again from the start rather than skip what it thinks it saw. Every
// revocation, whoever made it (this service, a device disabled, a failed
// renewal, a policy change), is read from the store as soon as the store
// notifies its commit (store.FeedNotifier: PostgreSQL's LISTEN/NOTIFY,
// across replicas; SQLite's in-process notifier), else at the next poll
// (PollInterval): another process writing the SQLite file (sigild's
// operator commands), or notifications down. A subscriber that falls
// behind is dropped (ErrLagged) and resumes.
//
// The same store events, the one durable outbox, reach OpenID Shared
// Signals receivers as CAEP events through internal/ssf, whose receivers
// authenticate with bearer tokens checked by Bearer (bearer.go).
package tokens
