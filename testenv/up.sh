#!/usr/bin/env bash
# Start the dev stack under DIR: a SoftHSM token, N swtpm "hosts" booted with
# the dev measurements, and a dev sigild using both; or, with --replicas R
# (R > 1), R sigild replicas on one private PostgreSQL cluster, sharing the
# token through `p11-kit server` as they would a network HSM, behind HAProxy
# in TCP mode (TLS passes through: mTLS ends at sigild), which checks each
# replica's /readyz.
#
#   testenv/up.sh DIR [--tpms N] [--replicas R] [--store sqlite|postgres]
#       N defaults to 2, R to 1; the store to sqlite for one replica (the
#       embedded default), postgres (a private cluster, testenv/postgres.sh)
#       for more, which cannot share a SQLite file
#   testenv/down.sh DIR   stops everything up.sh started
#
# Writes DIR/env, a shell file to source:
#   SIGIL_SERVER        https://127.0.0.1:PORT: sigild, or the balancer
#   SIGIL_REPLICAS      space-separated URLs of the replicas themselves
#   SIGIL_STORE         the store: sqlite:DIR/sigil.db, or the postgres:// DSN
#   SIGIL_CA_BUNDLE     the trust bundle (PEM)
#   SIGIL_TRUST_DOMAIN  sigil.test
#   SIGIL_TPMS          space-separated swtpm:HOST:PORT
#   SIGIL_EVENT_LOGS    their event logs, in the same order
#   SIGIL_HOST_STATE    host state (the AK each TPM's enrollments share), DIR/host
#   SIGIL_HSM_URI       the token's pkcs11: URI (PIN from a file under DIR)
#   P11_KIT_SERVER_ADDRESS  with replicas: the p11-kit server the URI goes through
#   SIGIL_POLICY_DIR    the policy directory sigild watches
#   SIGIL_EK_ROOTS      the EK CA that issued every dev TPM's EK certificate
#   SIGIL_AUDIT_KEY     the audit log's public key (PEM)
#   SIGIL_IDP_DIR       the demo user IdP (bin/demoidp token DIR -sub … -aud …)
#   SIGILD_CONFIG       sigild's configuration (sigild --config "$SIGILD_CONFIG" key list|rotate)
# With replicas, replica I runs from DIR/replicaI/ (sigild.yaml, sigild.pid,
# sigild.log), DIR/sigild.yaml is replica 1's configuration, HAProxy's is
# DIR/haproxy.cfg (statistics at http://127.0.0.1:PORT+1/stats, PORT the
# balancer's), and PostgreSQL lives in DIR/pg (testenv/postgres.sh).
# The dev policy lets any dev TPM enroll as spiffe://sigil.test/workload/NAME.
# Nothing is written outside DIR; processes are stopped by the PIDs recorded
# there. Every step is idempotent: running up.sh again reuses what runs, and
# restarts a replica that died on its port.
set -euo pipefail
# What this writes (logs with subjects and token ids, the database, keys) is
# readable by its owner only.
umask 077
# shellcheck source=testenv/ports.sh
source "$(dirname "$0")/ports.sh"
# shellcheck source=testenv/lib.sh
source "$(dirname "$0")/lib.sh"

die() { echo "up.sh: $*" >&2; exit 1; }

usage="usage: up.sh DIR [--tpms N] [--replicas R] [--store sqlite|postgres]"
[[ $# -ge 1 ]] || die "$usage"
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift
tpms=2 replicas=1 kind=
while [[ $# -gt 0 ]]; do
	case $1 in
	--tpms)
		[[ ${2:-} =~ ^[1-9][0-9]?$ ]] || die "--tpms wants a number from 1 to 99"
		tpms=$2
		shift 2
		;;
	--replicas)
		[[ ${2:-} =~ ^[1-9]$ ]] || die "--replicas wants a number from 1 to 9"
		replicas=$2
		shift 2
		;;
	--store)
		[[ ${2:-} == sqlite || ${2:-} == postgres ]] || die "--store wants sqlite or postgres"
		kind=$2
		shift 2
		;;
	*) die "unknown option '$1'; $usage" ;;
	esac
done
if [[ -z $kind ]]; then
	kind=sqlite
	((replicas == 1)) || kind=postgres
fi
[[ $kind == postgres || $replicas -eq 1 ]] || die "--replicas $replicas needs --store postgres: replicas cannot share a SQLite file"
# A stack is started with one shape: replicas cannot be added to or taken
# from a running one.
if [[ -s $dir/shape && $(<"$dir/shape") != "$replicas $kind" ]]; then
	die "$dir holds a stack of $(<"$dir/shape") (replicas, store), not $replicas $kind: down.sh it and use another DIR"
fi

# SIGIL_BIN names the directory holding sigild and sigil (default: bin/,
# built when missing).
bin=${SIGIL_BIN:-$root/bin}
for b in sigild sigil demoidp; do
	[[ -x $bin/$b ]] || (cd "$root" && go build -trimpath -o "$bin/" ./cmd/... ./testenv/cmd/demoidp)
done

# The HSM: replicas reach it through p11-kit's remote PKCS#11, as they
# would a network HSM.
if ((replicas > 1)); then
	command -v haproxy >/dev/null || die "haproxy not found: apt-get install haproxy (or run make deps)"
	hsm=$("$root/testenv/softhsm.sh" start "$dir/hsm" --server) || die "the HSM did not start"
else
	hsm=$("$root/testenv/softhsm.sh" start "$dir/hsm") || die "the HSM did not start"
fi
eval "$hsm"
if [[ $kind == postgres ]]; then
	store=$("$root/testenv/postgres.sh" start "$dir/pg") || die "PostgreSQL did not start"
else
	store=sqlite:$dir/sigil.db
fi

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

# pid_alive PIDFILE: its process runs, and is not a zombie (a killed
# daemon's parent, often init, reaps it late).
pid_alive() {
	local pid
	[[ -s $1 ]] && pid=$(<"$1") && running "$pid"
}

# configure CONFIG PORT [ISSUER] writes a sigild configuration listening on
# PORT with the store $store; with ISSUER (the balancer's URL), a replica's:
# the tokens' issuer is ISSUER, and the audit anchor (the last checkpoint
# signed, kept outside the database) is DIR/sigild.anchor, one for every
# replica on this machine: sigild refuses a database with checkpoints that
# its own anchor lacks, as a replica started after another has published
# would find it.
configure() {
	local sub=()
	[[ -n ${3:-} ]] && sub=(-e "s|^tokens:\$|tokens:\\n  issuer: $3|" -e "s|^audit:\$|audit:\\n  anchor: $dir/sigild.anchor|")
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$2|g" -e "s|@HSM_URI@|${SIGIL_HSM_URI//&/\\&}|g" \
		-e "s|^store: .*|store: ${store//&/\\&}|" "${sub[@]}" "$root/testenv/sigild.yaml" >"$1"
}

# init creates the keys and certificates once (idempotent) and exports the
# trust bundle and the audit key.
init() {
	"$bin/sigild" --config "$1" --log-level warn init >"$dir/init.out"
	"$bin/sigild" --config "$1" bundle >"$dir/bundle.pem"
	"$bin/sigild" --config "$1" audit key >"$dir/audit-key.pem"
}

listen() { sed -n 's/^listen: *//p' "$1"; }

# serve RDIR starts sigild from RDIR/sigild.yaml and waits until it is
# ready; it fails if sigild exits, which it does when another process took
# the port meanwhile. sigild inherits the port lock on fd 9 and holds it
# while it runs (not the balancer's, on fd 8).
serve() {
	# shellcheck disable=SC2086 # SIGILD_FLAGS: extra flags, e.g. "--pprof 127.0.0.1:6060"
	nohup "$bin/sigild" --config "$1/sigild.yaml" serve ${SIGILD_FLAGS:-} >"$1/sigild.log" 2>&1 8>&- &
	echo $! >"$1/sigild.pid"
	for _ in $(seq 300); do
		curl -fsS --cacert "$dir/bundle.pem" "https://$(listen "$1/sigild.yaml")/readyz" >/dev/null 2>&1 && return 0
		pid_alive "$1/sigild.pid" || return 1
		sleep 0.1
	done
	die "sigild is not ready; see $1/sigild.log"
}

# replica RDIR [ISSUER] runs sigild from RDIR, on the port its configuration
# names if it has one, else on a newly reserved one.
replica() {
	local rdir=$1 attempt
	pid_alive "$rdir/sigild.pid" && return 0
	mkdir -p "$rdir"
	if [[ -s $rdir/sigild.yaml && -n ${2:-} ]]; then
		# The balancer names this port: restart on it.
		serve "$rdir" || die "sigild exited; see $rdir/sigild.log"
		return 0
	fi
	# A port is reserved across processes (ports.sh), but one outside the
	# reservation can still take it before sigild binds it: try a few.
	for attempt in 1 2 3 4 5; do
		reserve_pair || die "no free port for sigild (ports.sh)"
		configure "$rdir/sigild.yaml" "$port" "${2:-}"
		[[ -s $dir/bundle.pem ]] || init "$rdir/sigild.yaml"
		serve "$rdir" && break
		exec 9>&-
		grep -q 'address already in use' "$rdir/sigild.log" && [[ $attempt -lt 5 ]] ||
			die "sigild exited; see $rdir/sigild.log"
	done
	exec 9>&-
}

# ready URL: sigild at URL (a replica or the balancer) answers /readyz.
ready() { curl -fsS --cacert "$dir/bundle.pem" "$1/readyz" >/dev/null; }

urls=()
echo "$replicas $kind" >"$dir/shape"
if ((replicas == 1)); then
	if ! pid_alive "$dir/sigild.pid"; then
		rm -f "$dir/bundle.pem" # init again: sigild.yaml names a new port
		replica "$dir"
	fi
	server="https://$(listen "$dir/sigild.yaml")"
	urls=("$server")
	ready "$server" || die "sigild is not ready; see $dir/sigild.log"
else
	# The balancer's port comes first, for every replica's configuration
	# names it as the tokens' issuer; its lock moves to fd 8 until HAProxy
	# holds it.
	if [[ -s $dir/haproxy.cfg ]]; then
		# The frontend's bind, the first one.
		lb=$(awk -F: '$1 ~ /^[ \t]*bind 127.0.0.1$/ { print $2; exit }' "$dir/haproxy.cfg")
	else
		reserve_pair || die "no free port for the balancer (ports.sh)"
		lb=$port
		exec 8>&9 9>&-
	fi
	server="https://127.0.0.1:$lb"
	for i in $(seq "$replicas"); do
		replica "$dir/replica$i" "$server"
		urls+=("https://$(listen "$dir/replica$i/sigild.yaml")")
	done
	ln -sfn replica1/sigild.yaml "$dir/sigild.yaml"
	if [[ ! -s $dir/haproxy.cfg ]]; then
		{
			sed -e "s|@PORT@|$lb|g" -e "s|@STATS_PORT@|$((lb + 1))|g" "$root/testenv/haproxy.cfg"
			for i in $(seq "$replicas"); do
				echo "	server replica$i $(listen "$dir/replica$i/sigild.yaml") check check-ssl verify none"
			done
		} >"$dir/haproxy.cfg"
	fi
	if ! pid_alive "$dir/haproxy.pid"; then
		haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy.cfg is not valid"
		setsid haproxy -db -f "$dir/haproxy.cfg" </dev/null >>"$dir/haproxy.log" 2>&1 9>&- &
		echo $! >"$dir/haproxy.pid"
	fi
	exec 8>&-
	# Ready once HAProxy passes TLS through and every replica is up in its
	# health checks (field 18 of the statistics' CSV is the status).
	for _ in $(seq 100); do
		ready "$server" 2>/dev/null && [[ $(curl -fsS "http://127.0.0.1:$((lb + 1))/stats;csv" 2>/dev/null |
			awk -F, '$1 == "sigild" && $2 ~ /^replica/ && $18 == "UP"' | wc -l) -eq $replicas ]] && break
		pid_alive "$dir/haproxy.pid" || die "haproxy exited; see $dir/haproxy.log"
		sleep 0.1
	done
	ready "$server" || die "the balancer does not reach a ready sigild; see $dir/haproxy.log"
fi
# OAuth clients compare the metadata's issuer with the URL they fetched it
# from (RFC 8414 §3.3): SIGIL_SERVER must be the issuer.
issuer=$(curl -fsS --cacert "$dir/bundle.pem" "$server/.well-known/oauth-authorization-server" |
	sed -n 's/.*"issuer": *"\([^"]*\)".*/\1/p')
[[ $issuer == "$server" ]] || die "sigild's issuer '$issuer' differs from SIGIL_SERVER $server (RFC 8414 §3.3)"

cat >"$dir/env" <<ENV
export SIGIL_SERVER='$server'
export SIGIL_REPLICAS='${urls[*]}'
export SIGIL_STORE='$store'
export SIGIL_CA_BUNDLE='$dir/bundle.pem'
export SIGIL_TRUST_DOMAIN='sigil.test'
export SIGIL_TPMS='${addrs[*]}'
export SIGIL_EVENT_LOGS='${logs[*]}'
export SIGIL_HOST_STATE='$dir/host'
export SIGIL_HSM_URI='$SIGIL_HSM_URI'
export SOFTHSM2_CONF='$SOFTHSM2_CONF'
${P11_KIT_SERVER_ADDRESS:+export P11_KIT_SERVER_ADDRESS='$P11_KIT_SERVER_ADDRESS'}
export SIGIL_POLICY_DIR='$dir/policy'
export SIGIL_EK_ROOTS='$dir/ekca/ek-ca.pem'
export SIGIL_AUDIT_KEY='$dir/audit-key.pem'
export SIGIL_IDP_DIR='$dir/idp'
export SIGILD_CONFIG='$dir/sigild.yaml'
ENV
if ((replicas > 1)); then
	echo "up.sh: $replicas sigild replicas (${urls[*]}) behind HAProxy at $server, on PostgreSQL, with $tpms TPMs; source $dir/env" >&2
else
	echo "up.sh: sigild at $server with $tpms TPMs; source $dir/env" >&2
fi
