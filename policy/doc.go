// Package policy decides, with Cedar policies (github.com/cedar-policy/cedar-go),
// which device may hold which SPIFFE ID and which workload may get or
// exchange which token.
//
// # Policy sets
//
// A policy set is a directory of *.cedar files. [Load] parses every file,
// validates every policy against the schema below with cedar-go's strict
// validator (x/exp/schema/validate: unknown entity types, actions and
// attributes, type errors, unguarded optional attributes and policies that
// apply to no action are all rejected) and requires a unique @id("...")
// annotation on each policy so decisions can name it. All problems are
// reported together, each with file, line and policy id (see [LoadError]);
// a syntax error ends the parse of its file.
// [Set.Version] is a content hash of the files: "sha256:<hex>".
//
// [Set.Decide] answers an [EnrollRequest] or a [TokenRequest] with a
// [Decision] that names the policies that determined it. The request types
// build the Cedar entities, so callers never do; a request that is invalid
// (a malformed SPIFFE ID, a digest of the wrong length) is denied. A forbid
// that fails to evaluate denies: Cedar itself would skip it.
//
// An [Engine] keeps the current set of a directory, reloads it on
// [Engine.Reload] (SIGHUP) and when polling sees a change, and keeps the
// active set when the new one does not load.
//
// # Schema
//
// The schema (namespace Sigil, file schema.cedarschema) has four entity
// types and five actions. Digests are "sha256:<lowercase hex>"; PCR values
// are "sha256:<index>:<lowercase hex>" from the SHA-256 bank, index in
// decimal; a SPIFFE ID is split into trust_domain ("sigil.test") and path
// ("/workload/web").
//
//	Sigil::Device      id: ek_hash. A TPM whose evidence attest verified.
//	  ek_hash          String       digest of the EK public key
//	  ek_issuer        String       EK certificate issuer DN; "" if the EK was allow-listed by hash
//	  ak_hash          String       digest of the AK public key
//	  secure_boot      Bool         Secure Boot was on, per the event log
//	  pcrs             Set<String>  quoted PCR values
//	  event_digests    Set<String>  digest of every replayed event-log event
//
//	Sigil::Identity    id: the SPIFFE ID a device asks to hold.
//	  trust_domain     String
//	  path             String
//
//	Sigil::Workload    id: its SPIFFE ID. The authenticated caller of the token service.
//	  spiffe_id        String
//	  trust_domain     String
//	  path             String
//	  policy_version   String         policy set version recorded in its certificate
//	  device           Sigil::Device  the device its certificate was issued on
//
//	Sigil::Audience    id: the audience string.
//	  name             String   the audience string
//	  trust_domain?    String   only if the audience is a SPIFFE ID ("resource has trust_domain")
//	  path?            String   likewise
//
//	action                     principal        resource         context
//	Sigil::Action::"enroll"    Sigil::Device    Sigil::Identity  {other_holders: Set<String>, device_identities: Set<String>, workload?: Sigil::WorkloadFacts}
//	Sigil::Action::"renew"     Sigil::Device    Sigil::Identity  {other_holders: Set<String>, device_identities: Set<String>, workload?: Sigil::WorkloadFacts}
//	Sigil::Action::"rebind"    Sigil::Device    Sigil::Identity  {previous_ak_hash: String, other_holders: Set<String>, device_identities: Set<String>, workload?: Sigil::WorkloadFacts}
//
//	Sigil::WorkloadFacts   what a host agent asserts about the local process it asks for (a record type)
//	  uid, gid         Long     the process's effective uid and gid
//	  user             String   the name of uid on the host; "" if none
//	  exe              String   its executable's absolute path (/proc/PID/exe)
//	  exe_sha256       String   digest of that executable
//	  cgroup           String   its unified cgroup path (/proc/PID/cgroup)
//	  unit             String   its systemd unit; "" outside one
//	Sigil::Action::"token"     Sigil::Workload  Sigil::Audience  {scopes: Set<String>}
//	Sigil::Action::"exchange"  Sigil::Workload  Sigil::Audience  {scopes: Set<String>, subject: Sigil::Subject}
//
//	Sigil::Subject     the subject token of an exchange (a record type)
//	  issuer           String       its "iss"
//	  sub              String       its "sub"
//	  scopes           Set<String>  its scopes
//	  act_chain        Set<String>  "sub" of every actor nested in its "act" claim
//	  act_depth        Long         how many actors are nested; 0 without "act"
//
// "rebind" is asked when a device whose EK is bound to one AK enrolls with
// another, which it does only when asked to replace the host's AK (sigil
// enroll --replace-ak); the device facts describe the new AK.
// device_identities are the SPIFFE IDs the device holds now, so a policy
// can bound what one host holds:
//
//	forbid (principal, action == Sigil::Action::"enroll", resource)
//	when { context.device_identities.containsAll(["spiffe://…/a", "spiffe://…/b"]) };
//
// workload is present only when a host agent (sigil agent --host) asks for
// a local process; it is the agent's assertion, not the TPM's:
//
//	permit (principal, action, resource == Sigil::Identity::"spiffe://…/payments")
//	when { context has workload && context.workload.exe == "/usr/bin/payments" &&
//	       context.workload.user == "payments" };
//
// other_holders are the
// ek_hash of every other active device that holds the identity when the
// device asks (a certificate for it, neither revoked nor expired), so a
// policy can keep an identity on one device:
//
//	forbid (principal, action, resource) when { !context.other_holders.isEmpty() };
//
// "token" is a token for the caller itself (client_credentials),
// "exchange" an RFC 8693 token exchange; [TokenRequest] picks one by
// whether it has a Subject. The token minted by
// an exchange nests the subject's "act" one level deeper, so a limit of N
// actors is written as context.subject.act_depth < N.
//
// Adding attributes keeps existing policies valid; renaming or removing
// them does not.
//
// # Policy tests
//
// A policy directory may hold tests in DIR/tests/*.yaml, run by [RunTests]
// ("sigil policy test DIR"). Each file lists named cases; each case is one
// request, enroll or token, with the same field names and value forms as
// the schema, and the expected decision. Decoding is strict: unknown or
// duplicate keys are errors. YAML anchors (&dev, *dev) reuse a device.
//
//	cases:
//	  - name: dev device enrolls as a workload
//	    enroll:
//	      action: enroll                 # enroll (default), renew or rebind
//	      identity: spiffe://sigil.test/workload/web
//	      previous_ak_hash: sha256:…     # rebind only
//	      device: &dev
//	        ek_hash: sha256:…
//	        ek_issuer: CN=…
//	        ak_hash: sha256:…
//	        secure_boot: true
//	        pcrs: [sha256:0:…, sha256:7:…]
//	        event_digests: [sha256:…]
//	    expect: allow                    # allow or deny
//	    policies: [dev-enroll-workload]  # optional: exactly these determining policies
//	  - name: exchange within the subject's scopes
//	    token:
//	      caller: {spiffe_id: spiffe://sigil.test/workload/web, policy_version: sha256:…, device: *dev}
//	      audience: spiffe://sigil.test/workload/db
//	      scopes: [read]
//	      subject: {issuer: https://idp.example, sub: alice, scopes: [read], act_chain: []}
//	    expect: allow
//
// testdata/dev is the policy set of the dev stack and an example of all of
// the above.
package policy
