// Package ssf makes sigild an OpenID Shared Signals Framework 1.0
// transmitter: standard receivers hear every token and certificate
// revocation as CAEP 1.0 events, from the same durable outbox as the
// revocation feed (the store's revocation events, see internal/tokens),
// so that nothing is lost across a restart or between replicas.
//
//	tx, err := ssf.New(ssf.Config{Issuer: iss, Audience: aud, Receivers: receivers,
//		Keys: keySet, Auth: tokenService, Store: st, Log: log})
//	go tx.Run(ctx)          // push delivery, and waking long polls
//	tx.Routes(mux, fail)    // the endpoints
//
// # Receivers
//
// A receiver is a workload named in the configuration (ssf.receivers) by
// its SPIFFE ID. It authenticates to every endpoint but the metadata with
// an RFC 6750 bearer token sigil issued it for the transmitter's audience
// (Config.Audience; a client_credentials token from POST /oauth2/token,
// which policy must permit), checked by tokens.Service.Bearer: ours,
// on record, not revoked, its certificate not revoked, and, if the request
// came with a TLS client certificate, bound to that one. Standard receivers
// rarely can do mTLS with a TPM key; the token is short-lived and good for
// the transmitter alone. Its subject must be a configured receiver
// (otherwise 403). A receiver sees and changes only its own streams:
// another's stream id is answered 404, as an unknown one.
//
// # Streams
//
// POST /ssf/stream creates a stream (at most StreamsPerReceiver per
// receiver, whichever replicas the creations reach: the store counts and
// inserts in one step; beyond, 409 too_many_streams): delivery by RFC 8936 poll (the transmitter sets the
// endpoint_url, /ssf/poll/ID) or RFC 8935 push to an endpoint_url that
// must be one of the https URLs configured for that receiver, so that a
// stream cannot make sigild post to an address of the caller's choosing;
// redirects are never followed. Its aud is the receiver's SPIFFE ID, and
// every SET on it carries that aud. events_delivered is events_requested
// (all if absent) within the supported session-revoked and
// credential-change. A new stream starts at the revocation feed's head.
// GET reads the caller's streams (or one, ?stream_id=), DELETE removes one,
// PATCH and PUT change one (update.go: receiver-supplied properties only,
// checked as at creation), and POST /ssf/verify queues a verification
// event with the receiver's state (a new request replaces one not yet
// delivered). GET and POST /ssf/status read and set a stream's status
// (status.go): paused holds events, disabled drops them; it is kept in the
// stored configuration, never shown in it. Streams, with
// their delivery position, are store.Streams: they survive a restart and
// every replica serves them.
//
// # Events
//
// A revoked token is a session-revoked event whose subject is the SSF
// "jwt_id" format {"format": "jwt_id", "iss": issuer, "jti": jti} (an
// external issuer's recorded token, which has no jti of ours, is "opaque"
// with sigil's name for it). A revoked certificate is a credential-change
// event (credential_type x509, change_type revoke, x509_issuer as the
// issuer's DN, x509_serial as the hex serial sigil uses everywhere,
// friendly_name its SPIFFE ID) whose subject is complex: the workload
// ({"format": "uri", "uri": SPIFFE ID}) and the device ({"format":
// "opaque", "id": EK hash}); disabling a device revokes its certificates,
// so it is heard as theirs. Both carry event_timestamp (the revocation's
// time), reason_admin {"en": reason stored with the revocation} and, where
// the reason says, initiating_entity (admin: a disabled device; policy: a
// failed attestation or a policy change). SETs are signed through the
// token key set (Config.Keys) with typ secevent+jwt, so they verify
// against the published JWKS; they have no sub and no exp (SSF §4.1); jti
// is "<stream>.<epoch>.<seq>", unique per stream and database lineage;
// txn is "<epoch>.<seq>", the revocation's id on the SSE feed, the same on
// every stream.
//
// # Delivery
//
// Each exchange (a poll, or a pusher's step) runs in one transaction
// under store LockStream: it records acknowledgements, moves the stream's
// cursor over the acknowledged events that follow it, and hands out the
// next ones, so that replicas polling one stream never lose an
// acknowledgement. An acknowledgement of a jti that is not one of the
// stream's SETs handed out is ignored. SETs handed out and not
// acknowledged are handed out again, by the next poll or push, after a
// restart or on another replica alike: delivery is at least once, and
// receivers deduplicate by jti (RFC 8936 §3, RFC 8935 §2). setErrs are
// logged and count as acknowledged.
//
// Poll (RFC 8936): maxEvents (default 100, at most 1000; 0 only
// acknowledges), returnImmediately (otherwise the poll waits up to
// LongPoll for a SET, woken as events commit on any replica), ack and
// setErrs; the answer has sets by jti and moreAvailable. A receiver may
// have twice StreamsPerReceiver polls running at once (429 beyond).
//
// Push (RFC 8935): one replica at a time (a store.Locker lease) posts each
// push stream's SETs in order, one at a time, as application/secevent+jwt
// with the stream's authorization_header; 202 (or 200/204) is taken, 400
// is a rejection (logged, not posted again), anything else is retried with
// a backoff doubling from PushBackoff to MaxPushBackoff. A SET taken is
// recorded at once, also while sigild stops.
//
// Request bodies are JSON of at most MaxBody bytes (413 beyond); errors
// are {"error", "error_description"}, an invalid token 401 with
// WWW-Authenticate: Bearer error="invalid_token".
package ssf
