package store

// Revocation reasons of certificates besides ReasonDeviceDisabled: what an
// operator gives when revoking one certificate. Each has an RFC 5280
// CRLReason, which the CRL carries (the daemon's CRL maps them); a reason
// outside this list is listed without one (unspecified).
const (
	ReasonKeyCompromise        = "key compromise"         // the TPM or its key may be in other hands
	ReasonAffiliationChanged   = "affiliation changed"    // the workload's identity or owner changed
	ReasonSuperseded           = "superseded"             // replaced by a newer certificate
	ReasonCessationOfOperation = "cessation of operation" // the workload is gone
	ReasonPrivilegeWithdrawn   = "privilege withdrawn"    // policy no longer permits the identity
)

// CertificateReasons lists the reasons an operator may give for revoking
// one certificate, in the order help texts show them.
var CertificateReasons = []string{
	ReasonKeyCompromise, ReasonAffiliationChanged, ReasonSuperseded,
	ReasonCessationOfOperation, ReasonPrivilegeWithdrawn,
}
