// Package tpm is the workload side of sigil's TPM attestation: it opens a TPM
// 2.0 (a device such as /dev/tpmrm0, or a swtpm as "swtpm:HOST:PORT"), reads
// its endorsement keys and their certificates, creates an attestation key
// (AK), answers a verifier's credential activation, quotes PCRs over a nonce
// together with the measured-boot event log, and creates an application key
// certified by the AK with the verifier's nonce as qualifying data.
//
// The application key never leaves the TPM: Key is a crypto.Signer (for a TLS
// client certificate, for instance), Key.Marshal and AK.Marshal give blobs a
// restarted workload loads again (Save and Load keep them in a directory), and
// Key.TSS2PEM gives the same key as a "TSS2 PRIVATE KEY" file for OpenSSL's
// tpm2 provider.
//
// It builds on github.com/google/go-attestation and github.com/google/go-tpm.
// Verification is the verifier's job (go-attestation's ActivationParameters,
// AKPublic.VerifyAll, EventLog.Verify and CertificationParameters.Verify); this
// package only checks a quote against the PCRs it read before returning it.
//
// A TPM serialises its operations, so all methods are safe for concurrent
// use. Transient objects are flushed as soon as they are not needed: an AK is
// loaded only for the operation that uses it, and at most one application key
// stays loaded between signatures, flushed whenever another operation needs
// object slots. This matters on swtpm, which has no resource manager and room
// for three loaded objects (a persistent parent in use takes one too).
package tpm
