// Package client is the workload side of sigil: it enrolls a TPM-backed
// identity and keeps its state in a directory.
//
// Enroll runs the protocol of DESIGN "Enrollment": it sends the EK and a new
// AK, activates the server's credential, creates an application key
// certified by the AK over the server's nonce, quotes the PCRs with the event
// log, and sends a CSR signed by the TPM key. The private key never leaves
// the TPM; the state directory holds TPM-encrypted blobs, the key as a TSS2
// PEM for OpenSSL's tpm2 provider, and the certificate chain.
package client
