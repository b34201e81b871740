#!/usr/bin/env bash
# SoftHSM2 token for development, demos and benchmarks; everything lives in DIR.
#
#   testenv/softhsm.sh start DIR [LABEL] [PIN] [--server]
#       Writes DIR/softhsm2.conf (token directory DIR/tokens, file object
#       store, log level ERROR) and initialises a token LABEL (default
#       "sigil") with user PIN PIN (default: random), unless it exists.
#       The PIN goes to DIR/pin (mode 0600), the SO PIN to DIR/so-pin.
#       Prints, on stdout, shell lines to eval:
#         export SOFTHSM2_CONF=DIR/softhsm2.conf
#         export SIGIL_HSM_URI='pkcs11:token=LABEL?module-path=...&pin-source=file:DIR/pin'
#       With --server it also starts `p11-kit server` exporting the token
#       on the Unix socket DIR/p11kit.sock (PID in DIR/p11kit.pid, log in
#       DIR/p11kit.log) — a "network HSM" — and SIGIL_HSM_URI goes through
#       p11-kit-client.so, which also needs the printed
#         export P11_KIT_SERVER_ADDRESS=unix:path=DIR/p11kit.sock
#   testenv/softhsm.sh stop DIR
#       Stops the p11-kit server, if any. SoftHSM itself is a library loaded
#       by its users, so there is nothing else to stop; tokens stay in
#       DIR/tokens (rm -rf DIR deletes them).
#   testenv/softhsm.sh uri DIR [--server]
#       Prints the token's pkcs11: URI (through p11-kit with --server).
#
# Usage: eval "$(testenv/softhsm.sh start .state/hsm)"
# All commands are idempotent. For tests and development only: PINs are
# passed to softhsm2-util on its command line.
set -euo pipefail
# What this writes (state, keys, logs) is
# readable by its owner only.
umask 077

readonly MODULE=/usr/lib/softhsm/libsofthsm2.so
readonly CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
readonly INSTALL="apt-get install softhsm2 p11-kit p11-kit-modules (or run make test)"

die() { echo "softhsm.sh: $*" >&2; exit 1; }
note() { echo "softhsm.sh: $*" >&2; }

need() {
	command -v softhsm2-util >/dev/null || die "softhsm2-util not found: $INSTALL"
	[[ -f $MODULE ]] || die "$MODULE not found: $INSTALL"
	if [[ $server == 1 ]]; then
		command -v p11-kit >/dev/null || die "p11-kit not found: $INSTALL"
		[[ -f $CLIENT ]] || die "$CLIENT not found: $INSTALL"
	fi
}

# pct STRING [query]: RFC 7512 percent-encoding ("/" kept in query values).
pct() {
	local s=$1 keep='A-Za-z0-9._~' out='' c i
	[[ ${2:-} == query ]] && keep+='/'
	keep+='-'
	local LC_ALL=C
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		if [[ $c == [$keep] ]]; then out+=$c; else out+=$(printf '%%%02X' "'$c"); fi
	done
	printf '%s' "$out"
}

randhex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

uri() {
	local module=$MODULE label
	label=$(cat "$dir/label" 2>/dev/null) || die "no token in $dir: run start first"
	[[ $server == 1 ]] && module=$CLIENT
	printf 'pkcs11:token=%s?module-path=%s&pin-source=file:%s\n' \
		"$(pct "$label")" "$(pct "$module" query)" "$(pct "$dir/pin" query)"
}

labels() { softhsm2-util --show-slots 2>/dev/null | sed -n 's/^ *Label: *//p' | sed 's/ *$//'; }

init_token() {
	local label=$1 pin=$2
	if labels | grep -Fxq -- "$label"; then
		[[ -s $dir/pin ]] || die "token $label exists but $dir/pin is missing; rm -rf $dir to start over"
		[[ -z $pin || $pin == "$(cat "$dir/pin")" ]] || die "token $label exists with another PIN (see $dir/pin)"
		note "token $label already initialised"
		return
	fi
	[[ -n $pin ]] || pin=$(randhex 8)
	(umask 077 && printf '%s\n' "$pin" >"$dir/pin" && randhex 8 >"$dir/so-pin")
	softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$(cat "$dir/so-pin")" >/dev/null
	note "token $label initialised"
}

running() {
	local pid
	pid=$(cat "$dir/p11kit.pid" 2>/dev/null) || return 1
	# p11-kit rewrites its argv[0]; match the socket path instead.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Fq -- "$dir/p11kit.sock"
}

start_server() {
	if running; then note "p11-kit server already running"; return; fi
	rm -f "$dir/p11kit.sock"
	# setsid: own process group, so stop also ends the per-connection
	# p11-kit-remote children.
	SOFTHSM2_CONF=$dir/softhsm2.conf setsid p11-kit server -f --provider "$MODULE" \
		-n "$dir/p11kit.sock" "pkcs11:token=$(pct "$(cat "$dir/label")")" \
		</dev/null >>"$dir/p11kit.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/p11kit.pid"
	for _ in $(seq 100); do
		[[ -S $dir/p11kit.sock ]] && { note "p11-kit server on $dir/p11kit.sock"; return; }
		# Not running: until the child execs p11-kit, its command line
		# is this script's.
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	die "p11-kit server did not start; see $dir/p11kit.log"
}

cmd_start() {
	local label=${1:-sigil} pin=${2:-}
	need
	mkdir -p "$dir/tokens"
	dir=$(cd "$dir" && pwd -P)
	if [[ -s $dir/label && $(cat "$dir/label") != "$label" ]]; then
		die "$dir holds token $(cat "$dir/label"); one token per DIR: use another DIR"
	fi
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$dir/softhsm2.conf"
	export SOFTHSM2_CONF=$dir/softhsm2.conf
	init_token "$label" "$pin"
	printf '%s\n' "$label" >"$dir/label"
	printf 'export SOFTHSM2_CONF=%q\n' "$SOFTHSM2_CONF"
	if [[ $server == 1 ]]; then
		start_server
		printf 'export P11_KIT_SERVER_ADDRESS=%q\n' "unix:path=$(pct "$dir/p11kit.sock" query)"
	fi
	echo "export SIGIL_HSM_URI='$(uri)'"
}

cmd_stop() {
	[[ -d $dir ]] || { note "nothing in $dir"; return; }
	if ! running; then
		rm -f "$dir/p11kit.pid"
		note "no p11-kit server running; SoftHSM is a library, nothing else to stop"
		return
	fi
	local pid i
	pid=$(cat "$dir/p11kit.pid")
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
	for i in $(seq 50); do running || break; sleep 0.1; done
	running && kill -KILL -- "-$pid" 2>/dev/null
	rm -f "$dir/p11kit.pid" "$dir/p11kit.sock"
	note "p11-kit server stopped"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

main() {
	[[ $# -ge 2 ]] || usage
	local cmd=$1 args=() a
	server=0
	shift
	for a in "$@"; do
		if [[ $a == --server ]]; then server=1; else args+=("$a"); fi
	done
	dir=${args[0]}
	case $cmd in
	start) cmd_start "${args[@]:1}" ;;
	stop) cmd_stop ;;
	uri) dir=$(cd "$dir" 2>/dev/null && pwd -P) || die "no such directory"; uri ;;
	*) usage ;;
	esac
}

main "$@"
