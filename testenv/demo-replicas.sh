#!/usr/bin/env bash
# make demo-replicas: two sigild replicas on PostgreSQL behind HAProxy, and
# the loss of one of them.
#
#   testenv/demo-replicas.sh DIR
#
# Starts the dev stack under DIR with two replicas (testenv/up.sh --replicas
# 2), enrolls workloads and exchanges tokens through the balancer, SIGKILLs
# one replica, shows HAProxy take it out of rotation while enrollment,
# exchange and revocation carry on through the other, restarts it, and
# verifies the audit log against each replica: one log, the same from both.
# Stops everything again.
set -euo pipefail
umask 077

# shellcheck source=testenv/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"
fail() { echo "demo-replicas: $*" >&2; exit 1; }

cleanup() { "$root/testenv/down.sh" "$dir" 2>/dev/null; }
cleanup
rm -rf "$dir"
mkdir -p "$dir"
trap cleanup EXIT

step "1. Two sigild replicas on one PostgreSQL, one HSM through p11-kit, HAProxy in front (TCP, TLS passed through)"
show "testenv/up.sh $dir --replicas 2 --tpms 3"
"$root/testenv/up.sh" "$dir" --replicas 2 --tpms 3
# shellcheck disable=SC1091
source "$dir/env"
sigil=$root/bin/sigil
read -r replica1 replica2 <<<"$SIGIL_REPLICAS"
stats="http://127.0.0.1:$((${SIGIL_SERVER##*:} + 1))/stats;csv"
# rotation prints each replica's state in HAProxy's health checks.
rotation() { curl -fsS "$stats" | awk -F, '$1 == "sigild" && $2 ~ /^replica/ { printf "   %s %s\n", $2, $18 }'; }
echo "   balancer  $SIGIL_SERVER   (SIGIL_SERVER, the tokens' issuer)"
echo "   replicas  $replica1 $replica2   (SIGIL_REPLICAS)"
echo "   store     ${SIGIL_STORE%%:*}://…@${SIGIL_STORE#*@}   (SIGIL_STORE)"
rotation

step "2. Workloads enroll and exchange tokens through the balancer"
read -r tpm_a tpm_b tpm_c <<<"$SIGIL_TPMS"
read -r log_a log_b log_c <<<"$SIGIL_EVENT_LOGS"
"$sigil" enroll --tpm "$tpm_a" --event-log "$log_a" --identity spiffe://sigil.test/workload/frontend --state "$dir/frontend" >/dev/null
"$sigil" enroll --tpm "$tpm_b" --event-log "$log_b" --identity spiffe://sigil.test/workload/orders --state "$dir/orders" >/dev/null
ok "frontend and orders enrolled"
user=$("$root/bin/demoidp" token "$SIGIL_IDP_DIR" -sub alice -aud spiffe://sigil.test/workload/frontend -scope "orders:read")
show "sigil exchange --state frontend --subject-token \$USER_TOKEN --audience spiffe://sigil.test/workload/orders --scope orders:read"
before=$("$sigil" exchange --state "$dir/frontend" --subject-token "$user" --audience spiffe://sigil.test/workload/orders --scope orders:read)
"$sigil" introspect --state "$dir/orders" "$before" | grep -E '"(active|sub|iss)"' | sed 's/^/   /'
ok "exchanged"

step "3. SIGKILL replica 1"
pid=$(<"$dir/replica1/sigild.pid")
show "kill -KILL $pid   (sigild at $replica1)"
kill -KILL "$pid"
for _ in $(seq 100); do
	rotation | grep -q 'replica1 DOWN' && break
	sleep 0.1
done
rotation
rotation | grep -q 'replica1 DOWN' || fail "HAProxy did not take replica 1 out of rotation"
refused "replica 1 is out of rotation: its /readyz no longer answers"

step "4. Service carries on through replica 2: enroll, exchange, revoke"
"$sigil" enroll --tpm "$tpm_c" --event-log "$log_c" --identity spiffe://sigil.test/workload/auditor --state "$dir/auditor" >/dev/null
ok "the auditor enrolled (a challenge and its answer, both through the balancer)"
after=$("$sigil" exchange --state "$dir/frontend" --subject-token "$user" --audience spiffe://sigil.test/workload/orders --scope orders:read)
ok "a token exchanged"
show "sigil revoke --state frontend \$TOKEN   (the token exchanged before the kill)"
"$sigil" revoke --state "$dir/frontend" "$before"
active=$("$sigil" introspect --state "$dir/orders" "$before" | sed -n 's/.*"active": *\([a-z]*\).*/\1/p')
[[ $active == false ]] || fail "the revoked token is still active"
active=$("$sigil" introspect --state "$dir/orders" "$after" | sed -n 's/.*"active": *\([a-z]*\).*/\1/p')
[[ $active == true ]] || fail "the token exchanged after the kill is not active"
ok "revoked: introspection says the first token is inactive, the second active"

step "5. Replica 1 comes back (up.sh restarts it on its port) and HAProxy puts it back in rotation"
show "testenv/up.sh $dir --replicas 2 --tpms 3"
"$root/testenv/up.sh" "$dir" --replicas 2 --tpms 3 2>/dev/null
rotation

step "6. One audit log: the auditor verifies it against each replica"
for r in "$replica1" "$replica2"; do
	show "sigil audit verify --server $r --auditor auditor --wait 10s"
	"$sigil" audit verify --server "$r" --auditor "$dir/auditor" --wait 10s --state "$dir/auditor.checkpoint" | sed 's/^/   /'
done
ok "the log verifies against both replicas, each consistent with what the other served"

printf '\n%sDemo complete.%s Files are in %s; the stack is stopped.\n' "$bold" "$reset" "$dir"
