#!/usr/bin/env bash
# Stop what testenv/up.sh DIR started, by the PIDs it recorded. Keeps DIR's
# files (rm -rf DIR removes the HSM token, TPM states and database).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "$1" 2>/dev/null && pwd) || exit 0
# running PID: the process exists and is not a zombie waiting for its
# reaper (a zombie has exited; its parent, often init, reaps it late).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]; }

if [[ -s $dir/sigild.pid ]]; then
	pid=$(<"$dir/sigild.pid")
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/sigild.yaml"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 250); do running "$pid" || break; sleep 0.02; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/sigild.pid"
fi
for tpm in "$dir"/tpm*/; do
	[[ -d $tpm ]] && "$root/testenv/swtpm.sh" stop "$tpm"
done
"$root/testenv/softhsm.sh" stop "$dir/hsm" >/dev/null
