// Package hostagent is `sigil agent --host`: run once per host, it owns the
// TPM and the host's AK and serves the host's workloads on a Unix socket.
//
// Each caller is identified by the kernel, not by what it says: its uid
// and gid from SO_PEERCRED, and from /proc what follows (executable path
// and SHA-256, cgroup, systemd unit), read with the caller pinned by a
// pidfd (see peerFacts). The agent sends these facts to sigild with the
// enrollment and with every renewal, as its own assertion (api.Workload);
// sigild records them in the evidence and the audit log, marked as the
// host agent's, and its Cedar policy decides (context.workload).
//
// For each identity it creates the TPM key (certified by the host's AK
// over sigild's nonce), obtains and renews the certificate, and gives the
// workload the chain and the key as a TSS2 PRIVATE KEY blob that works only
// with this TPM; it also signs with that key on the workload's behalf
// (client.OpenAgent) and serves the token service of `sigil agent`
// (internal/agent.TokenService) for it on the same socket. An identity is
// handed only to a caller with the uid, executable and unit it was
// enrolled for; another is refused with the reason.
//
// Everything lives under the host state directory, one directory per
// identity (HOST_STATE/agent/ID), so a restarted agent resumes every
// identity where it was.
//
// What the facts are worth: the kernel's credentials cannot be forged by
// an unprivileged process, and /proc describes the caller as long as it
// lives. Root on the host (or anyone who can ptrace the caller, or replace
// its executable between the agent's reads) can make them say anything;
// they prove which process asked only as far as the host's own integrity
// goes, which the TPM quote speaks for.
package hostagent
