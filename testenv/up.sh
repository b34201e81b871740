#!/usr/bin/env bash
# Start the dev stack under DIR: a SoftHSM token, N swtpm "hosts" booted with
# the dev measurements, and a dev sigild using both.
#
#   testenv/up.sh DIR [--tpms N]     (N defaults to 2)
#   testenv/down.sh DIR              stops everything up.sh started
#
# Writes DIR/env, a shell file to source:
#   SIGIL_SERVER        https://127.0.0.1:PORT
#   SIGIL_CA_BUNDLE     the trust bundle (PEM)
#   SIGIL_TRUST_DOMAIN  sigil.test
#   SIGIL_TPMS          space-separated swtpm:HOST:PORT
#   SIGIL_EVENT_LOGS    their event logs, in the same order
#   SIGIL_HSM_URI       the token's pkcs11: URI (PIN from a file under DIR)
#   SIGIL_POLICY_DIR    the policy directory sigild watches
#   SIGIL_EK_ROOTS      the EK CA that issued every dev TPM's EK certificate
#   SIGIL_AUDIT_KEY     the audit log's public key (PEM)
#   SIGIL_IDP_DIR       the demo user IdP (bin/demoidp token DIR -sub … -aud …)
#   SIGILD_CONFIG       sigild's configuration (sigild --config "$SIGILD_CONFIG" key list|rotate)
# The dev policy lets any dev TPM enroll as spiffe://sigil.test/workload/NAME.
# Nothing is written outside DIR; processes are stopped by the PIDs recorded
# there. Every step is idempotent: running up.sh again reuses what runs.
set -euo pipefail
# What this writes (logs with subjects and token ids, the database, keys) is
# readable by its owner only.
umask 077
# shellcheck source=testenv/ports.sh
source "$(dirname "$0")/ports.sh"

die() { echo "up.sh: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || die "usage: $0 DIR [--tpms N]"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
tpms=2
if [[ ${2:-} == --tpms ]]; then
	[[ ${3:-} =~ ^[1-9][0-9]?$ ]] || die "--tpms wants a number from 1 to 99"
	tpms=$3
fi

# SIGIL_BIN names the directory holding sigild and sigil (default: bin/,
# built when missing).
bin=${SIGIL_BIN:-$root/bin}
for b in sigild sigil demoidp; do
	[[ -x $bin/$b ]] || (cd "$root" && go build -trimpath -o "$bin/" ./cmd/... ./testenv/cmd/demoidp)
done

# The HSM.
eval "$("$root/testenv/softhsm.sh" start "$dir/hsm")"

# The TPMs, with one EK CA for all of them.
addrs=() logs=()
for i in $(seq "$tpms"); do
	addrs+=("$(SWTPM_EKCA_DIR="$dir/ekca" "$root/testenv/swtpm.sh" start "$dir/tpm$i")")
	"$root/testenv/swtpm.sh" boot "$dir/tpm$i" dev
	logs+=("$dir/tpm$i/eventlog.bin")
done

# The demo user IdP, whose tokens start delegation chains.
"$bin/demoidp" init "$dir/idp"

# The policy and the configuration.
mkdir -p "$dir/policy"
cp -R "$root/testenv/policy/." "$dir/policy/"

pid_alive() { [[ -s $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# configure writes DIR/sigild.yaml for a port; init is idempotent.
configure() {
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$1|g" -e "s|@HSM_URI@|${SIGIL_HSM_URI//&/\\&}|g" \
		"$root/testenv/sigild.yaml" >"$dir/sigild.yaml"
	"$bin/sigild" --config "$dir/sigild.yaml" --log-level warn init >"$dir/init.out"
	"$bin/sigild" --config "$dir/sigild.yaml" bundle >"$dir/bundle.pem"
	"$bin/sigild" --config "$dir/sigild.yaml" audit key >"$dir/audit-key.pem"
}

# serve starts sigild and waits until it is ready; it fails if sigild
# exits, which it does when another process took the port meanwhile. sigild
# inherits the port lock on fd 9 and holds it while it runs.
serve() {
	# shellcheck disable=SC2086 # SIGILD_FLAGS: extra flags, e.g. "--pprof 127.0.0.1:6060"
	nohup "$bin/sigild" --config "$dir/sigild.yaml" serve ${SIGILD_FLAGS:-} >"$dir/sigild.log" 2>&1 &
	echo $! >"$dir/sigild.pid"
	for _ in $(seq 100); do
		curl -fsS --cacert "$dir/bundle.pem" "https://$(listen)/readyz" >/dev/null 2>&1 && return 0
		pid_alive "$dir/sigild.pid" || return 1
		sleep 0.1
	done
	die "sigild is not ready; see $dir/sigild.log"
}

listen() { sed -n 's/^listen: *//p' "$dir/sigild.yaml"; }

if ! pid_alive "$dir/sigild.pid"; then
	# A port is reserved across processes (ports.sh), but one outside the
	# reservation can still take it before sigild binds it: try a few.
	for attempt in 1 2 3 4 5; do
		reserve_pair || die "no free port for sigild (ports.sh)"
		configure "$port"
		serve && break
		exec 9>&-
		grep -q 'address already in use' "$dir/sigild.log" && [[ $attempt -lt 5 ]] ||
			die "sigild exited; see $dir/sigild.log"
	done
	exec 9>&-
fi
server="https://$(listen)"
curl -fsS --cacert "$dir/bundle.pem" "$server/readyz" >/dev/null || die "sigild is not ready; see $dir/sigild.log"
# OAuth clients compare the metadata's issuer with the URL they fetched it
# from (RFC 8414 §3.3): SIGIL_SERVER must be the issuer.
issuer=$(curl -fsS --cacert "$dir/bundle.pem" "$server/.well-known/oauth-authorization-server" |
	sed -n 's/.*"issuer": *"\([^"]*\)".*/\1/p')
[[ $issuer == "$server" ]] || die "sigild's issuer '$issuer' differs from SIGIL_SERVER $server (RFC 8414 §3.3)"

cat >"$dir/env" <<ENV
export SIGIL_SERVER='$server'
export SIGIL_CA_BUNDLE='$dir/bundle.pem'
export SIGIL_TRUST_DOMAIN='sigil.test'
export SIGIL_TPMS='${addrs[*]}'
export SIGIL_EVENT_LOGS='${logs[*]}'
export SIGIL_HSM_URI='$SIGIL_HSM_URI'
export SOFTHSM2_CONF='$SOFTHSM2_CONF'
export SIGIL_POLICY_DIR='$dir/policy'
export SIGIL_EK_ROOTS='$dir/ekca/ek-ca.pem'
export SIGIL_AUDIT_KEY='$dir/audit-key.pem'
export SIGIL_IDP_DIR='$dir/idp'
export SIGILD_CONFIG='$dir/sigild.yaml'
ENV
echo "up.sh: sigild at $server with $tpms TPMs; source $dir/env" >&2
