// Package attest verifies TPM enrollment evidence on the server side. Every
// check fails closed and names what failed; nothing here trusts a field the
// TPM did not sign unless a signed field pins it.
//
// The checks, in the order the protocol meets them:
//
//  1. EK: the EK certificate chains to a configured EK root, or the EK public
//     key is allow-listed; the certificate's key is the EK public key.
//  2. AK: restricted, sign-only, fixedTPM, fixedParent, sensitiveDataOrigin,
//     created by the TPM (signed creation data), RSA ≥ 2048 or ECC P-256+.
//  3. Credential activation: the secret matches, compared in constant time.
//  4. Quote: signed by that AK over the challenge nonce, covering every PCR
//     the policy names (a quote over fewer PCRs fails: CVE-2022-0317).
//  5. Event log: replays to the quoted PCRs; facts come from verified event
//     digests only, never from event types.
//  6. Application key: certified by the AK over the challenge nonce, a
//     non-restricted signing key, fixedTPM, fixedParent,
//     sensitiveDataOrigin; the CSR is signed by that key and carries it.
//
// An Evidence record keeps everything needed to re-run checks 1, 2 and 4–6
// offline (Reverify); check 3 is inherently online. A Renewal record keeps
// a renewal's quote and CSR (VerifyRenewal). Both are kept forever, so
// their encoding is a versioned format owned by this package (format.go:
// EvidenceVersion, ParseEvidence, ParseRenewal, Digest), never the HTTP
// messages of package api, which the server converts into these types.
// This package does not import api.
package attest
