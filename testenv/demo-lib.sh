# The common start of the demos (demo.sh, demo-replicas.sh DIR); source it
# with the script's arguments. Sets root (the repository) and dir (DIR,
# absolute, created) and defines the output helpers.

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)

bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' reset=$'\e[0m'
[[ -t 1 ]] || bold='' dim='' green='' red='' reset=''
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$reset"; }
ok() { printf '%s✔ %s%s\n' "$green" "$*" "$reset"; }
refused() { printf '%s✘ %s%s\n' "$red" "$*" "$reset"; }

# audit_export DIR PATTERN: sigild audit export to DIR once a checkpoint
# covers an entry matching PATTERN (grep -E): an export holds only the
# entries the latest checkpoint covers, and sigild checkpoints new entries
# every audit.checkpoint_interval. Needs SIGILD_CONFIG (testenv/up.sh).
audit_export() {
	local _
	for _ in $(seq 100); do
		rm -rf -- "${1:?}"
		"$root/bin/sigild" --config "$SIGILD_CONFIG" --log-level warn audit export "$1" >/dev/null
		cat "$1"/entries/* | grep -qE -- "$2" && return 0
		sleep 0.2
	done
	echo "no audit checkpoint covered an entry matching $2 within 20 s" >&2
	exit 1
}
