package api

// PathPolicyWhatIf answers what a candidate policy set would revoke (POST,
// mTLS as one of policy.operators): a WhatIfRequest in, a WhatIf out.
const PathPolicyWhatIf = "/v1/policy/what-if"

// WhatIfRequest is a candidate policy directory: its *.cedar files by base
// name. The whole request is at most MaxRequestBytes.
type WhatIfRequest struct {
	Files map[string]string `json:"files"`
}

// WhatIf is what a candidate policy set would revoke, judged on the
// evidence each current certificate was issued on. Nothing is changed.
type WhatIf struct {
	Version       string `json:"version"`        // the candidate set's
	ActiveVersion string `json:"active_version"` // the set in effect
	Devices       int    `json:"devices"`        // active devices holding current certificates
	Certificates  int    `json:"certificates"`   // their current certificates, each evaluated
	// Held is true when applying the set would be held for an operator's
	// confirmation (policy.max_revoke_fraction).
	Held         bool              `json:"held"`
	Revoke       []WhatIfRevoke    `json:"revoke"`
	Unverifiable []WhatIfUnchecked `json:"unverifiable,omitempty"`
}

// WhatIfRevoke is a certificate the set would revoke, with its tokens.
type WhatIfRevoke struct {
	Serial    string   `json:"serial"`
	SPIFFEID  string   `json:"spiffe_id"`
	EKHash    string   `json:"ek_hash"`
	Decision  string   `json:"decision"`
	PolicyIDs []string `json:"policy_ids,omitempty"`
}

// WhatIfUnchecked is a certificate whose stored evidence no longer
// verifies: no policy can be evaluated on it, and it is not revoked.
type WhatIfUnchecked struct {
	Serial string `json:"serial"`
	EKHash string `json:"ek_hash"`
	Error  string `json:"error"`
}
