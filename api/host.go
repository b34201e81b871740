package api

import "time"

// The host agent's API (sigil agent --host), JSON over HTTP on a Unix
// socket. The agent identifies each caller by the kernel's credentials of
// its connection, never by what the request says; an identity it holds for
// one process (uid, executable, unit) is refused to any other.
const (
	// PathHostSVID gets the caller's X.509-SVID for an identity, enrolling
	// it first if the agent holds none yet (HostSVIDRequest → HostSVID).
	PathHostSVID = "/v1/host/svid"
	// PathHostRenew renews it now, unless the agent already holds a newer
	// certificate than Serial (HostRenewRequest → HostSVID).
	PathHostRenew = "/v1/host/renew"
	// PathHostSign signs a digest with the identity's TPM key, for a
	// workload that uses the key through the agent (HostSignRequest →
	// HostSignature).
	PathHostSign = "/v1/host/sign"
	// HeaderHostIdentity names, on the agent's token service paths, which
	// of the caller's identities a token is for; it may be left out when
	// the caller holds one.
	HeaderHostIdentity = "Sigil-Identity"
	// MaxHostRequest bounds a request body to the host agent.
	MaxHostRequest = 16 << 10
)

// HostSVIDRequest asks for an identity.
type HostSVIDRequest struct {
	Identity   string `json:"identity"`              // the SPIFFE ID
	ServerAuth bool   `json:"server_auth,omitempty"` // at first enrollment: serverAuth too
}

// HostRenewRequest asks for a renewal of the certificate with Serial (hex).
type HostRenewRequest struct {
	Identity string `json:"identity"`
	Serial   string `json:"serial,omitempty"`
}

// HostSVID is an identity's current certificate and key as the host agent
// holds them.
type HostSVID struct {
	SPIFFEID string   `json:"spiffe_id"`
	Chain    [][]byte `json:"chain"`  // DER, leaf first
	Bundle   [][]byte `json:"bundle"` // DER trust bundle of the trust domain
	// KeyPEM is the TPM key as a "TSS2 PRIVATE KEY" PEM: usable only with
	// this host's TPM (OpenSSL's tpm2 provider), never a private key in
	// the clear.
	KeyPEM         string    `json:"key_pem"`
	Server         string    `json:"server"` // sigild's URL, for tokens
	ExpiresAt      time.Time `json:"expires_at"`
	EvidenceDigest string    `json:"evidence_digest"`
	PolicyVersion  string    `json:"policy_version"`
}

// HostSignRequest asks the agent to sign Digest, a hash by Hash ("SHA-256",
// "SHA-384" or "SHA-512"), with the identity's TPM key; PSSSaltLength is
// set for RSA-PSS only.
type HostSignRequest struct {
	Identity      string `json:"identity"`
	Digest        []byte `json:"digest"`
	Hash          string `json:"hash"`
	PSSSaltLength int    `json:"pss_salt_length,omitempty"`
	PSS           bool   `json:"pss,omitempty"`
}

// HostSignature is the signature, in the key's usual encoding (ASN.1 for
// ECDSA).
type HostSignature struct {
	Signature []byte `json:"signature"`
}
