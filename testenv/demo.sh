#!/usr/bin/env bash
# make demo: the main job of sigil, end to end, on this machine.
#
#   testenv/demo.sh DIR
#
# Starts the dev stack under DIR (SoftHSM token, swtpm hosts, sigild), enrolls
# a host booted with the dev measurements and one that booted debug
# firmware, shows the policy permit one and deny the other, checks the issued
# X.509-SVID chain and renews it; runs a delegation chain with the CLI, then
# the showcase services (frontend → orders → payments) with a stolen token,
# a logout and a compromised host disabled; a host that reboots into debug
# firmware revoked by its failed renewal, and a policy change previewed with
# what-if that revokes exactly one host, all of which an OpenID Shared Signals
# receiver hears as CAEP events; runs the host agent for the workloads of one
# host and shows it refuse an impostor process; verifies the audit log; and
# stops everything again.
set -euo pipefail
# What this writes (logs with subjects and token ids, the database, keys) is
# readable by its owner only.
umask 077

# shellcheck source=testenv/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"

stop_services() { # the showcase services this demo started, by their PIDs
	local f pid
	for f in "$dir"/{frontend,orders,payments}.pid; do
		[[ -s $f ]] || continue
		pid=$(<"$f")
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--state $dir/" && kill "$pid" 2>/dev/null
		rm -f "$f"
	done
	return 0
}
start_receiver() { # TOKEN_FILE AUD OUT: the SSF receiver, in the background once its stream exists
	/usr/bin/python3 "$root/testenv/ssf-receiver.py" --issuer "$SIGIL_SERVER" --ca "$SIGIL_CA_BUNDLE" \
		--token-file "$1" --aud "$2" --events 5 --quiet 3 --timeout 280 --text >"$3" 2>&1 &
	echo $! >"$dir/ssf-receiver.pid"
	for _ in $(seq 200); do grep -q '^READY ' "$3" && return 0; sleep 0.05; done
	cat "$3" >&2
	echo "the SSF receiver did not start" >&2
	exit 1
}
receiver_output() { # OUT: waits for the receiver to finish and prints what it heard
	wait "$(<"$dir/ssf-receiver.pid")" || { cat "$1" >&2; echo "the SSF receiver failed" >&2; exit 1; }
	rm -f "$dir/ssf-receiver.pid"
	grep -v '^READY \|^DONE$' "$1" | sed 's/^/   /'
}
stop_receiver() { # the SSF receiver this demo started, by its PID
	local pid
	[[ -s $dir/ssf-receiver.pid ]] || return 0
	pid=$(<"$dir/ssf-receiver.pid")
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "ssf-receiver.py" && kill "$pid" 2>/dev/null
	rm -f "$dir/ssf-receiver.pid"
	return 0
}
stop_agent() { # the host agent of step 15, by its PID
	local pid
	[[ -s $dir/agent.pid ]] || return 0
	pid=$(<"$dir/agent.pid")
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--socket $dir/run/agent.sock" && kill "$pid" 2>/dev/null
	rm -f "$dir/agent.pid"
	return 0
}
cleanup() {
	stop_agent
	stop_services
	stop_receiver
	"$root/testenv/down.sh" "$dir" 2>/dev/null
	local t
	for t in tpm-debug tpm-inventory tpm-rom tpm-siem; do
		"$root/testenv/swtpm.sh" stop "$dir/$t" 2>/dev/null || true
	done
}
cleanup
rm -rf "$dir"
mkdir -p "$dir"
trap cleanup EXIT

step "1. Start the dev stack: a SoftHSM token, four swtpm hosts, sigild"
show "testenv/up.sh $dir --tpms 4"
"$root/testenv/up.sh" "$dir" --tpms 4
# shellcheck disable=SC1091
source "$dir/env"
sigil=$root/bin/sigil

step "2. Every key sigild signs with lives in the HSM"
show "sigild key list   (an operator command: sigil, on every workload host, links no HSM)"
"$root/bin/sigild" --config "$SIGILD_CONFIG" --log-level warn key list
show "cat $dir/init.out   (sigild init: the CA hierarchy, signed in the HSM)"
cat "$dir/init.out"

step "3. Host A (dev firmware, Secure Boot) enrolls as spiffe://sigil.test/workload/orders"
echo "   EK certificate -> AK credential activation -> PCR quote over the server's nonce"
echo "   -> event log replay -> TPM key certified by the AK -> policy -> certificate"
read -r tpm_a tpm_b2 tpm_c tpm_d <<<"$SIGIL_TPMS"
read -r log_a log_b2 log_c log_d <<<"$SIGIL_EVENT_LOGS"
show "sigil enroll --tpm $tpm_a --identity spiffe://sigil.test/workload/orders --state $dir/orders --server-auth"
"$sigil" enroll --server-auth --tpm "$tpm_a" --event-log "$log_a" --identity spiffe://sigil.test/workload/orders --state "$dir/orders"
ok "permitted by policy"

step "4. The certificate: an X.509-SVID whose key never left the TPM"
openssl x509 -in "$dir/orders/cert.pem" -noout -subject -issuer -dates -ext subjectAltName,keyUsage,extendedKeyUsage | sed 's/^/   /'
openssl x509 -in "$dir/orders/cert.pem" -noout -text | grep -q '1.3.6.1.4.1.65226.1.1' &&
	echo "   sigil evidence extension 1.3.6.1.4.1.65226.1.1: evidence digest, EK hash, policy version"
awk 'n==1{print} /END CERTIFICATE/{n++}' "$dir/orders/cert.pem" >"$dir/issuer.pem"
show "openssl verify -CAfile bundle.pem -untrusted issuer.pem cert.pem"
openssl verify -purpose sslclient -CAfile "$SIGIL_CA_BUNDLE" -untrusted "$dir/issuer.pem" "$dir/orders/cert.pem"
show "openssl pkeyutl -provider tpm2 -sign -inkey $dir/orders/key.pem   (the same key, through tpm2-openssl)"
printf 'sigil demo' | openssl dgst -sha256 -binary >"$dir/digest.bin"
tcti="swtpm:host=${tpm_a#swtpm:}"
tcti="${tcti%:*},port=${tpm_a##*:}"
TPM2OPENSSL_TCTI=$tcti openssl pkeyutl -provider tpm2 -provider default -sign \
	-inkey "$dir/orders/key.pem" -in "$dir/digest.bin" -out "$dir/sig.bin"
openssl x509 -in "$dir/orders/cert.pem" -noout -pubkey >"$dir/pub.pem"
openssl pkeyutl -verify -pubin -inkey "$dir/pub.pem" -in "$dir/digest.bin" -sigfile "$dir/sig.bin"
ok "a signature by the TPM key verifies against the certificate"

step "5. Host B booted debug firmware: same TPM vendor, same EK CA, different measurements"
show "testenv/swtpm.sh start $dir/tpm-debug && testenv/swtpm.sh boot $dir/tpm-debug debug"
tpm_b=$(SWTPM_EKCA_DIR="$dir/ekca" "$root/testenv/swtpm.sh" start "$dir/tpm-debug")
"$root/testenv/swtpm.sh" boot "$dir/tpm-debug" debug
show "sigil enroll --tpm $tpm_b --identity spiffe://sigil.test/workload/billing --state $dir/billing"
if "$sigil" enroll --tpm "$tpm_b" --event-log "$dir/tpm-debug/eventlog.bin" \
	--identity spiffe://sigil.test/workload/billing --state "$dir/billing"; then
	echo "host B was enrolled: the policy should have refused it" >&2
	exit 1
fi
refused "denied by policy (exit code 3): its event log measured debug firmware"

step "6. Host A renews: a fresh quote by the AK pinned at enrollment, same TPM key"
show "sigil renew --state $dir/orders"
"$sigil" renew --state "$dir/orders"
ok "renewed"

step "7. Delegation on the command line: frontend → orders → payments, narrowing, bound tokens"
"$sigil" enroll --server-auth --tpm "$tpm_b2" --event-log "$log_b2" --identity spiffe://sigil.test/workload/frontend --state "$dir/frontend" >/dev/null
"$sigil" enroll --server-auth --tpm "$tpm_c" --event-log "$log_c" --identity spiffe://sigil.test/workload/payments --state "$dir/payments" >/dev/null
"$sigil" enroll --tpm "$tpm_d" --event-log "$log_d" --identity spiffe://sigil.test/workload/reports --state "$dir/reports" >/dev/null
ok "frontend, payments and reports enrolled, each on its own TPM"
idp=$root/bin/demoidp
show "demoidp token -sub alice -aud spiffe://sigil.test/workload/frontend -scope 'orders:read orders:write payments:charge'"
user=$("$idp" token "$SIGIL_IDP_DIR" -sub alice -aud spiffe://sigil.test/workload/frontend -scope "orders:read orders:write payments:charge")
show "sigil exchange --state frontend --subject-token \$USER_TOKEN --audience spiffe://sigil.test/workload/orders --scope 'orders:read payments:charge'"
t1=$("$sigil" exchange --state "$dir/frontend" --subject-token "$user" --audience spiffe://sigil.test/workload/orders --scope "orders:read payments:charge")
show "sigil exchange --state orders --subject-token \$T1 --audience spiffe://sigil.test/workload/payments --scope payments:charge"
t2=$("$sigil" exchange --state "$dir/orders" --subject-token "$t1" --audience spiffe://sigil.test/workload/payments --scope payments:charge)
show "sigil introspect --state payments \$T2   (payments is the audience)"
"$sigil" introspect --state "$dir/payments" "$t2" | sed 's/^/   /'
ok "sub alice; act: orders, on behalf of frontend; scope narrowed to payments:charge; bound to orders' certificate (cnf)"
show "sigil exchange --state orders --subject-token \$T1 --audience spiffe://sigil.test/workload/payments --scope orders:write   (widening)"
if "$sigil" exchange --state "$dir/orders" --subject-token "$t1" --audience spiffe://sigil.test/workload/payments --scope orders:write; then
	echo "a widening exchange succeeded" >&2
	exit 1
fi
refused "scope widening refused"
show "sigil revoke --state frontend \$T1   (the user's first exchange)"
"$sigil" revoke --state "$dir/frontend" "$t1"
show "sigil introspect --state payments \$T2"
"$sigil" introspect --state "$dir/payments" "$t2" | sed 's/^/   /'
ok "revoking the first exchange made every token derived from it inactive"
echo "   An attacker copies a token that orders holds for payments (here: one orders asks for now)"
stolen=$("$sigil" token --state "$dir/orders" --audience spiffe://sigil.test/workload/payments --scope payments:charge)

step "8. The showcase: three services built only on sigil's client and verify libraries"
echo "   examples/showcase: every service keeps its X.509-SVID renewed from its TPM, serves mTLS with it,"
echo "   verifies incoming tokens (issuer, audience, cnf = the caller's certificate, revocation feed),"
echo "   and gets tokens for its outgoing calls by exchanging the one it was called with."
showcase=$root/bin/showcase
services=$dir/services.log
: >"$services"
serve() { # ROLE [NEXT_ADDR]
	local next=()
	[[ -n ${2:-} ]] && next=(--next "https://$2")
	"$showcase" serve --role "$1" --state "$dir/$1" --ready "$dir/$1.addr" "${next[@]}" >>"$services" 2>&1 &
	echo $! >"$dir/$1.pid"
	for _ in $(seq 100); do [[ -s $dir/$1.addr ]] && break; sleep 0.05; done
	[[ -s $dir/$1.addr ]] || { cat "$services" >&2; echo "$1 did not start" >&2; exit 1; }
}
seen=0
service_output() { # print what the services wrote since the last call
	sleep 0.1
	tail -n +$((seen + 1)) "$services" | sed 's/^/   /'
	seen=$(wc -l <"$services")
}
serve payments
serve orders "$(<"$dir/payments.addr")"
serve frontend "$(<"$dir/orders.addr")"
service_output
frontend_url=https://$(<"$dir/frontend.addr")

step "9. Alice checks out: her IdP token goes to frontend; each hop exchanges it for a narrower, bound token"
show "showcase call --url $frontend_url/checkout --id spiffe://sigil.test/workload/frontend --token \$USER_TOKEN"
"$showcase" call --url "$frontend_url/checkout" --ca-bundle "$SIGIL_CA_BUNDLE" --id spiffe://sigil.test/workload/frontend --token "$user" | sed 's/^/   /'
service_output
ok "payments knows who pays (alice) and through whom (orders, on behalf of frontend)"

step "10. The stolen token, replayed from another host (its own TPM and a valid certificate, but not orders' key)"
show "showcase call --state reports --url https://payments/charge --id spiffe://sigil.test/workload/payments --token \$STOLEN"
if "$showcase" call --state "$dir/reports" --url "https://$(<"$dir/payments.addr")/charge" \
	--id spiffe://sigil.test/workload/payments --token "$stolen" 2>&1 | sed 's/^/   /'; then
	echo "a stolen token was accepted" >&2
	exit 1
fi
refused "refused: the token is bound (cnf x5t#S256) to orders' certificate, whose key never leaves orders' TPM"
show "the same, with no client certificate at all"
if "$showcase" call --ca-bundle "$SIGIL_CA_BUNDLE" --url "https://$(<"$dir/payments.addr")/charge" \
	--id spiffe://sigil.test/workload/payments --token "$stolen" 2>&1 | sed 's/^/   /'; then
	echo "a call without a client certificate was accepted" >&2
	exit 1
fi
service_output
refused "refused: payments accepts only mTLS from workloads of sigil.test"

step "11. Alice logs out: frontend revokes her token at sigil; every token exchanged from it dies with it"
show "showcase call --url $frontend_url/logout --token \$USER_TOKEN"
"$showcase" call --url "$frontend_url/logout" --ca-bundle "$SIGIL_CA_BUNDLE" --id spiffe://sigil.test/workload/frontend --token "$user" | sed 's/^/   /'
revoked_at=$(date +%s%N)
service_output
show "showcase call --url $frontend_url/checkout --token \$USER_TOKEN   (again)"
if "$showcase" call --url "$frontend_url/checkout" --ca-bundle "$SIGIL_CA_BUNDLE" \
	--id spiffe://sigil.test/workload/frontend --token "$user" 2>&1 | sed 's/^/   /'; then
	echo "the chain still worked after logout" >&2
	exit 1
fi
service_output
refused "refused $(( ($(date +%s%N) - revoked_at) / 1000000 )) ms after the logout: sigild refuses to exchange her revoked token, and the tokens already exchanged from it were revoked with it (orders and payments learn that from the revocation feed)"

step "12. reports' host is compromised: the operator disables its device, and everything it holds dies"
echo "   First an OpenID Shared Signals receiver subscribes: testenv/ssf-receiver.py, written apart from sigil"
echo "   (Python and PyJWT), authenticated by a bearer token sigil issued spiffe://sigil.test/workload/siem,"
echo "   a workload on a host of its own. It hears every revocation of steps 12 to 14."
tpm_siem=$(SWTPM_EKCA_DIR="$dir/ekca" "$root/testenv/swtpm.sh" start "$dir/tpm-siem")
"$root/testenv/swtpm.sh" boot "$dir/tpm-siem" dev
"$sigil" enroll --tpm "$tpm_siem" --event-log "$dir/tpm-siem/eventlog.bin" --identity spiffe://sigil.test/workload/siem --state "$dir/siem" >/dev/null
show "sigil token --state siem --audience spiffe://sigil.test/sigild/ssf"
"$sigil" token --state "$dir/siem" --audience spiffe://sigil.test/sigild/ssf >"$dir/siem.token"
show "ssf-receiver.py --issuer \$SIGIL_SERVER --token-file siem.token --aud spiffe://sigil.test/workload/siem   (polls, RFC 8936)"
start_receiver "$dir/siem.token" spiffe://sigil.test/workload/siem "$dir/ssf.out"
report_token=$("$sigil" token --state "$dir/reports" --audience spiffe://sigil.test/workload/payments --scope payments:charge)
show "showcase call --state reports --url https://payments/charge --token \$REPORTS_TOKEN   (before)"
"$showcase" call --state "$dir/reports" --url "https://$(<"$dir/payments.addr")/charge" \
	--id spiffe://sigil.test/workload/payments --token "$report_token" | sed 's/^/   /'
service_output
reports_ek=$("$root/bin/sigild" --config "$SIGILD_CONFIG" --log-level warn device list | awk '/workload\/reports/ {print $1}')
show "sigild device disable $reports_ek   (the device holding spiffe://sigil.test/workload/reports)"
"$root/bin/sigild" --config "$SIGILD_CONFIG" --log-level warn device disable "$reports_ek" | sed 's/^/   /'
disabled_at=$(date +%s%N)
show "showcase call --state reports --url https://payments/charge --token \$REPORTS_TOKEN   (after)"
refusal=
for _ in $(seq 100); do # every call is a new process, TLS handshake included
	if ! out=$("$showcase" call --state "$dir/reports" --url "https://$(<"$dir/payments.addr")/charge" \
		--id spiffe://sigil.test/workload/payments --token "$report_token" 2>&1); then
		refusal=$out
		break
	fi
	sleep 0.05
done
[[ -n $refusal ]] || { echo "payments still accepts the disabled device" >&2; exit 1; }
printf '%s\n' "$refusal" | sed 's/^/   /'
service_output
refused "refused $(( ($(date +%s%N) - disabled_at) / 1000000 )) ms after the disable: the certificate's revocation reached payments on the signed feed, and its TLS config refuses it"
show "sigil token --state reports --audience payments"
if "$sigil" token --state "$dir/reports" --audience spiffe://sigil.test/workload/payments 2>&1 | sed 's/^/   /'; then
	echo "sigild issued a token to the disabled device" >&2
	exit 1
fi
refused "sigild refuses the disabled device's certificate"
echo "   the audit log says why:"
audit_export "$dir/export" "\"ek_hash\":\"$reports_ek\",\"status\":\"disabled\""
cat "$dir"/export/entries/* | sed -nE 's/.*"kind":"(device\.disabled)".*/\1/p;
	s/.*"kind":"(certificate\.revoked|token\.revoked)".*"reason":"([^"]*device disabled)".*/\1, reason: \2/p' |
	sort | uniq -c | sed 's/^ */   /'
ok "the device, its certificate and every token bound to it are revoked, each with an audit entry saying why"

step "13. inventory's host reboots into debug firmware: its next renewal fails attestation, and that revokes"
show "testenv/swtpm.sh start tpm-inventory && sigil enroll --identity spiffe://sigil.test/workload/inventory --state inventory"
tpm_inv=$(SWTPM_EKCA_DIR="$dir/ekca" "$root/testenv/swtpm.sh" start "$dir/tpm-inventory")
"$root/testenv/swtpm.sh" boot "$dir/tpm-inventory" dev
"$sigil" enroll --tpm "$tpm_inv" --event-log "$dir/tpm-inventory/eventlog.bin" \
	--identity spiffe://sigil.test/workload/inventory --state "$dir/inventory" >/dev/null
inv_token=$("$sigil" token --state "$dir/inventory" --audience spiffe://sigil.test/workload/payments --scope payments:charge)
"$showcase" call --state "$dir/inventory" --url "https://$(<"$dir/payments.addr")/charge" \
	--id spiffe://sigil.test/workload/payments --token "$inv_token" | sed 's/^/   /'
service_output
show "testenv/swtpm.sh reboot tpm-inventory debug   (PCRs reset; the firmware now measures a debug build)"
"$root/testenv/swtpm.sh" reboot "$dir/tpm-inventory" debug >/dev/null
show "sigil renew --state inventory   (a fresh quote by the bound AK over sigild's nonce, and the event log)"
if "$sigil" renew --state "$dir/inventory" 2>&1 | sed 's/^/   /'; then
	echo "the debug host renewed" >&2
	exit 1
fi
failed_at=$(date +%s%N)
refusal=
for _ in $(seq 100); do
	if ! out=$("$showcase" call --state "$dir/inventory" --url "https://$(<"$dir/payments.addr")/charge" \
		--id spiffe://sigil.test/workload/payments --token "$inv_token" 2>&1); then
		refusal=$out
		break
	fi
	sleep 0.05
done
[[ -n $refusal ]] || { echo "payments still accepts the host that failed attestation" >&2; exit 1; }
printf '%s\n' "$refusal" | sed 's/^/   /'
service_output
refused "refused $(( ($(date +%s%N) - failed_at) / 1000000 )) ms after the failed renewal: the quote was the host's own, so the refusal revoked its certificate (attestation-failed) and every token bound to it; payments refuses both, over mTLS and in the token"
stop_services

step "14. The operator forbids a vulnerable option ROM: what-if first, then the reload revokes exactly that host"
show "testenv/swtpm.sh start tpm-rom && testenv/swtpm.sh boot tpm-rom oprom   (a host with a plug-in card: option ROM 2.1 on PCR 2)"
tpm_rom=$(SWTPM_EKCA_DIR="$dir/ekca" "$root/testenv/swtpm.sh" start "$dir/tpm-rom")
"$root/testenv/swtpm.sh" boot "$dir/tpm-rom" oprom
"$sigil" enroll --tpm "$tpm_rom" --event-log "$dir/tpm-rom/eventlog.bin" \
	--identity spiffe://sigil.test/workload/shipping --state "$dir/shipping" >/dev/null
"$sigil" enroll --tpm "$tpm_a" --event-log "$log_a" --identity spiffe://sigil.test/workload/operator --state "$dir/operator" >/dev/null
ok "shipping enrolled on the option ROM host (PCR 2 is not pinned); the operator (policy.operators) on host A"
mkdir -p "$dir/candidate"
cp "$SIGIL_POLICY_DIR"/*.cedar "$dir/candidate/"
cat >"$dir/candidate/oprom.cedar" <<CEDAR
@id("no-option-rom-2.1")
forbid (principal is Sigil::Device, action, resource)
when { principal.event_digests.contains("sha256:98b940b0542edb4cd5bc307f18891ee3fcf8a682f6bcda2d428bbe45637252f2") };
CEDAR
sed 's/^/   /' "$dir/candidate/oprom.cedar"
show "sigil policy what-if --state operator candidate/   (sigild evaluates the stored evidence; nothing changes)"
"$sigil" policy what-if --state "$dir/operator" "$dir/candidate" | sed 's/^/   /'
show "cp candidate/oprom.cedar \$SIGIL_POLICY_DIR/ && kill -HUP sigild"
cp "$dir/candidate/oprom.cedar" "$SIGIL_POLICY_DIR/.oprom.cedar.tmp" && mv "$SIGIL_POLICY_DIR/.oprom.cedar.tmp" "$SIGIL_POLICY_DIR/oprom.cedar"
kill -HUP "$(<"$dir/sigild.pid")"
reloaded_at=$(date +%s%N)
for _ in $(seq 100); do
	"$sigil" token --state "$dir/shipping" --audience spiffe://sigil.test/workload/payments >/dev/null 2>&1 || break
	sleep 0.05
done
if "$sigil" token --state "$dir/shipping" --audience spiffe://sigil.test/workload/payments >/dev/null 2>&1; then
	echo "the reload did not revoke shipping" >&2
	exit 1
fi
refused "shipping refused $(( ($(date +%s%N) - reloaded_at) / 1000000 )) ms after the reload"
"$sigil" token --state "$dir/operator" --audience spiffe://sigil.test/workload/payments >/dev/null
ok "the operator, on a host without that option ROM, still gets tokens: the reload revoked exactly one device"
audit_export "$dir/export-trust" '"spiffe_id":"spiffe://sigil.test/workload/shipping".*"reason":"policy-changed"'
echo "   the audit log records each revocation with its reason and the decision:"
cat "$dir"/export-trust/entries/* | sed "s/\\\\\"/'/g" |
	sed -nE 's/.*"kind":"certificate\.revoked".*"spiffe_id":"([^"]*)".*"reason":"(attestation-failed|policy-changed)","decision":"([^"]{0,90})[^"]*".*/\1: \2: \3…/p' | sed 's/^/   /'
show "the SSF receiver's output since step 12: the CAEP events it verified (JWKS, iss, aud, typ) and acknowledged"
receiver_output "$dir/ssf.out"
ok "a standard Shared Signals receiver heard each revocation above: certificates as credential-change, tokens as session-revoked, with the reason"

step "15. Many workloads on one host: the host agent attests local processes by their kernel credentials"
echo "   One agent per host owns the TPM and the host's AK (shared by every enrollment on the host);"
echo "   each local process asks it on a Unix socket, and sigild's policy sees uid, executable and unit."
show "sigil agent --host --socket $dir/run/agent.sock --tpm $tpm_c   (payments' host)"
"$sigil" agent --host --socket "$dir/run/agent.sock" --tpm "$tpm_c" --event-log "$log_c" 2>"$dir/agent.log" &
echo $! >"$dir/agent.pid"
for _ in $(seq 100); do [[ -S $dir/run/agent.sock ]] && break; sleep 0.1; done
[[ -S $dir/run/agent.sock ]] || { echo "the host agent did not start:" >&2; cat "$dir/agent.log" >&2; exit 1; }
mkdir -p "$dir/programs"
cp "$sigil" "$dir/programs/payments"
cp "$sigil" "$dir/programs/impostor"
show "programs/payments svid --agent agent.sock --identity spiffe://sigil.test/workload/payments --out payments-agent"
"$dir/programs/payments" svid --agent "$dir/run/agent.sock" --identity spiffe://sigil.test/workload/payments --out "$dir/payments-agent" | sed 's/^/   /'
ok "the payments program got its certificate and its TSS2 key ($(head -1 "$dir/payments-agent/svid.pem.key"))"
show "programs/impostor svid --agent agent.sock --identity spiffe://sigil.test/workload/payments"
if "$dir/programs/impostor" svid --agent "$dir/run/agent.sock" --identity spiffe://sigil.test/workload/payments 2>&1 | sed 's/^/   /'; then
	echo "the agent handed payments' identity to another program" >&2
	exit 1
fi
refused "the agent refuses another program the identity it holds for payments"
show "programs/impostor svid --agent agent.sock --identity spiffe://sigil.test/workload/orders"
if "$dir/programs/impostor" svid --agent "$dir/run/agent.sock" --identity spiffe://sigil.test/workload/orders 2>&1 | sed 's/^/   /'; then
	echo "sigild enrolled an impostor program as orders" >&2
	exit 1
fi
refused "sigild's policy refuses the impostor on the agent's facts (recorded as the agent's assertion, not the TPM's)"
stop_agent

step "16. An auditor verifies the log offline: checkpoint signatures, hashes, every enrollment's evidence"
echo "   (the log's public key comes out of band: sigild audit key)"
echo "   The entries name users, scopes, chains and denial reasons: sigild serves them over mTLS only to the"
echo "   identities in audit.readers, here spiffe://sigil.test/workload/auditor, enrolled on host A."
"$sigil" enroll --tpm "$tpm_a" --event-log "$log_a" --identity spiffe://sigil.test/workload/auditor --state "$dir/auditor" >/dev/null
show "curl --cacert bundle.pem \$SIGIL_SERVER/v1/audit/entries?start=0&end=1   (no client certificate)"
status=$(curl -sS --cacert "$SIGIL_CA_BUNDLE" -o /dev/null -w '%{http_code}' "$SIGIL_SERVER/v1/audit/entries?start=0&end=1")
[[ $status == 401 ]] || { echo "audit entries without a certificate: HTTP $status, want 401" >&2; exit 1; }
refused "401: entries only for audit readers; the signed checkpoint stays public:"
curl -fsS --cacert "$SIGIL_CA_BUNDLE" "$SIGIL_SERVER/v1/audit/checkpoint" | sed 's/^/   /'
show "sigil audit verify --auditor auditor --wait 10s --server \$SIGIL_SERVER --key audit-key.pem --ek-roots ek-ca.pem"
"$sigil" audit verify --auditor "$dir/auditor" --wait 10s --state "$dir/auditor.checkpoint" | sed 's/^/   /'
ok "the audit log verifies"

printf '\n%sDemo complete.%s Files are in %s; the stack is stopped.\n' "$bold" "$reset" "$dir"
