#!/usr/bin/env bash
# Stop what testenv/up.sh DIR started, by the PIDs it recorded: HAProxy, the
# sigild replicas, the TPMs, the p11-kit server, PostgreSQL. Keeps DIR's
# files (rm -rf DIR removes the HSM token, TPM states and database).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "$1" 2>/dev/null && pwd) || exit 0
# shellcheck source=testenv/lib.sh
source "$(dirname "$0")/lib.sh"

# stop PIDFILE MARK: SIGTERM the process in PIDFILE if its command line
# names MARK (so a reused PID is left alone), SIGKILL it after 5 s.
stop() {
	local pid
	[[ -s $1 ]] || return 0
	pid=$(marked_pid "$1" "$2")
	if [[ -n $pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 250); do running "$pid" || break; sleep 0.02; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

stop "$dir/haproxy.pid" "$dir/haproxy.cfg"
stop "$dir/sigild.pid" "$dir/sigild.yaml"
for r in "$dir"/replica*/; do
	[[ -d $r ]] && stop "$r/sigild.pid" "${r%/}/sigild.yaml"
done
for tpm in "$dir"/tpm*/; do
	[[ -d $tpm ]] && "$root/testenv/swtpm.sh" stop "$tpm"
done
"$root/testenv/softhsm.sh" stop "$dir/hsm" >/dev/null
if [[ -d $dir/pg ]]; then "$root/testenv/postgres.sh" stop "$dir/pg"; fi
