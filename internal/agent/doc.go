// Package agent is `sigil agent`: a long-running process beside a service
// written in any language, which keeps the workload's X.509-SVID renewed
// and lets the service use it without linking sigil.
//
// Run, in order:
//
//  1. writes the OpenSSL 3 configuration (openssl.cnf, openssl.env) that
//     makes OpenSSL software use the TPM key through tpm2-openssl, says
//     when the TPM has no resource manager in front of it, and checks that
//     OpenSSL with that configuration signs with the key (CheckOpenSSL);
//  2. opens the workload with client.New, whose renewal loop re-attests
//     and renews the certificate, and writes the chain, the trust bundle
//     and the key's TSS2 PEM into the output directory (WriteFiles), each
//     file replaced atomically, then runs the reload hook (Hook), again
//     after every renewal;
//  3. serves, each if configured: the token service on a Unix socket
//     (TokenService: JSON over HTTP, the client's token cache), the
//     ingress sidecar (Ingress: mTLS with the TPM key in front of a local
//     plain-HTTP service, the caller's token verified, identity passed in
//     headers), the egress sidecar (Egress: loopback plain HTTP out to
//     named targets over mTLS with a bound token) and the client metrics;
//  4. on SIGTERM (the context's end) stops accepting, lets requests in
//     flight finish for a few seconds, and closes the TPM.
//
// The README's "sigil agent" section is the contract for the socket API
// and the request headers.
package agent
