#!/usr/bin/env bash
# Start and stop a private PostgreSQL cluster whose files all live in one
# directory, as testenv's Go helper (postgres.go) does for the tests.
#
#   testenv/postgres.sh start DIR   initdb once, start; prints the DSN
#   testenv/postgres.sh dsn   DIR   prints the DSN of the running cluster
#   testenv/postgres.sh stop  DIR   stops it (by the PID in DIR/data/postmaster.pid only)
#
# The server listens on 127.0.0.1 on a port reserved across processes (see
# ports.sh; the server holds the lock while it runs), its unix socket is in
# DIR/sock (0700), and the superuser "sigil" logs in with the password in
# DIR/password (scram-sha-256). Run as root, the server runs as Debian's
# postgres user, as initdb and postgres refuse root (DIR and its parent,
# and its ancestors under $TMPDIR or /tmp, become traversable, not
# readable, by others). Durable (fsync on).
set -euo pipefail
# shellcheck source=testenv/ports.sh
source "$(dirname "$0")/ports.sh"
# shellcheck source=testenv/lib.sh
source "$(dirname "$0")/lib.sh"

BIN=/usr/lib/postgresql/15/bin
die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR | dsn DIR | stop DIR"; }

# as_server CMD…: runs CMD as the server's user.
as_server() {
	if [[ $(id -u) -eq 0 ]]; then
		setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
	else
		"$@"
	fi
}

# pid_of DIR: the PID of DIR's running postmaster, or nothing.
pid_of() { marked_pid "$1/data/postmaster.pid" "-D $1/data"; }

dsn() {
	local port
	port=$(sed -n 4p "$1/data/postmaster.pid")
	echo "postgres://sigil:$(<"$1/password")@127.0.0.1:$port/postgres?sslmode=disable"
}

init() {
	local dir=$1
	[[ -s $dir/data/PG_VERSION ]] && return 0
	[[ -x $BIN/initdb ]] || die "$BIN/initdb not found: apt-get install postgresql (or run make deps)"
	mkdir -p "$dir/data" "$dir/sock"
	chmod 700 "$dir/data" "$dir/sock"
	openssl rand -hex 16 >"$dir/password"
	chmod 600 "$dir/password"
	cp "$dir/password" "$dir/pwfile"
	if [[ $(id -u) -eq 0 ]]; then
		id postgres >/dev/null 2>&1 || die "no postgres user to run the server as root: apt-get install postgresql"
		chown postgres: "$dir/data" "$dir/sock" "$dir/pwfile"
		# Let the server's user pass through DIR and its parent, not list
		# them; under the temporary directory, through every ancestor (a
		# test's DIR/pg, in a 0700 t.TempDir).
		chmod o+x "$dir" "$(dirname "$dir")"
		local tmp d
		tmp=$(realpath -m "${TMPDIR:-/tmp}")
		for ((d = ${#dir}; d > 0; )); do
			local a=${dir:0:d}
			[[ $a == "$tmp"/* ]] || break
			chmod o+x "$a"
			a=${a%/*}
			d=${#a}
		done
	fi
	as_server "$BIN/initdb" --pgdata "$dir/data" --username sigil --pwfile "$dir/pwfile" \
		--auth scram-sha-256 --encoding UTF8 --locale C >"$dir/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -5 "$dir/initdb.log")"
	rm -f "$dir/pwfile"
}

start() {
	local dir=$1 i
	if [[ -n $(pid_of "$dir") ]]; then
		dsn "$dir"
		return 0
	fi
	init "$dir"
	reserve_pair || die "no free port pair"
	as_server setsid "$BIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -c "port=$port" \
		-c "unix_socket_directories=$dir/sock" </dev/null >>"$dir/postgres.log" 2>&1 &
	exec 9>&-
	for ((i = 0; i < 600; i++)); do
		if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
			dsn "$dir"
			return 0
		fi
		kill -0 $! 2>/dev/null || die "postgres exited: $(tail -5 "$dir/postgres.log")"
		sleep 0.1
	done
	die "postgres not ready in 60s: $(tail -5 "$dir/postgres.log")"
}

stop() {
	local dir=$1 pid i
	pid=$(pid_of "$dir")
	[[ -n $pid ]] || return 0
	kill -INT "$pid"
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

[[ $# -eq 2 ]] || usage
dir=$(realpath -m "$2")
case $1 in
start) mkdir -p "$dir" && start "$dir" ;;
dsn) [[ -n $(pid_of "$dir") ]] || die "no cluster runs in $dir"; dsn "$dir" ;;
stop) stop "$dir" ;;
*) usage ;;
esac
