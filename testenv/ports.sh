# shellcheck shell=bash
# Sourced by swtpm.sh and up.sh: reserve a pair of loopback ports, P and P+1
# with P even, with the same cross-process locks as testenv's Go code (see
# testenv/ports.go): an exclusive flock on ${TMPDIR:-/tmp}/sigil-ports-UID/P.
#
#   reserve_pair   locks a free pair on file descriptor 9 and sets $port to P.
#                  Start the daemon with fd 9 open, so it holds the lock for
#                  as long as it runs, then `exec 9>&-` in the script.
#
# SIGIL_TEST_PORTS=LOW-HIGH picks the range; by default it is 10000 up to the
# kernel's ephemeral range, where no connect() or bind(0) puts anything.

port_range() {
	local low high
	if [[ -n ${SIGIL_TEST_PORTS:-} ]]; then
		[[ $SIGIL_TEST_PORTS =~ ^([0-9]+)-([0-9]+)$ ]] || return 1
		low=${BASH_REMATCH[1]} high=$((BASH_REMATCH[2] + 1))
	else
		read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768 high=60999
		if ((low - 10000 >= 2000)); then
			high=$low low=10000
		elif ((65535 - high >= 2000)); then
			low=$((high + 1)) high=65536
		else
			low=10000 high=65536
		fi
	fi
	low=$((low + low % 2))
	((high - low >= 2 && low >= 1024 && high <= 65536)) || return 1
	echo "$low $(((high - low) / 2))"
}

# pair_listened reports whether anything listens on P or P+1.
pair_listened() {
	[[ -n $(ss -Hltn "( sport = :$1 or sport = :$(($1 + 1)) )" 2>/dev/null) ]]
}

reserve_pair() {
	local low pairs start i p locks
	read -r low pairs < <(port_range) || return 1
	[[ -n $pairs ]] || return 1
	locks=${TMPDIR:-/tmp}/sigil-ports-$(id -u)
	mkdir -p -m 700 "$locks" || return 1
	start=$(((RANDOM * 32768 + RANDOM) % pairs))
	for ((i = 0; i < pairs; i++)); do
		p=$((low + 2 * ((start + i) % pairs)))
		exec 9>"$locks/$p"
		if flock -n 9 && ! pair_listened "$p"; then
			port=$p
			return 0
		fi
		exec 9>&-
	done
	return 1
}
