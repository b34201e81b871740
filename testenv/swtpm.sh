#!/usr/bin/env bash
# Start, stop and boot a swtpm whose files all live in one directory.
#
#   testenv/swtpm.sh start DIR [PORT]   provision once, start; prints swtpm:127.0.0.1:PORT
#   testenv/swtpm.sh addr  DIR          prints the address of the running swtpm
#   testenv/swtpm.sh boot  DIR [PROFILE] synthetic measured boot (PROFILE dev, the
#                                       default, debug or oprom), writes DIR/eventlog.bin
#   testenv/swtpm.sh stop  DIR          stops it (by the PID in DIR/swtpm.pid only)
#   testenv/swtpm.sh reboot DIR [PROFILE] power-cycles it on the same port (PCRs
#                                       reset, keys and NV kept) and boots PROFILE
#
# TPM commands are served on 127.0.0.1:PORT, the control channel on PORT+1 (the
# layout the tpm2-tss swtpm TCTI expects: swtpm:host=127.0.0.1,port=PORT).
# When PORT is not given, a free even PORT is reserved across processes (see
# ports.sh; swtpm holds the lock while it runs). Every command is idempotent.
#
# DIR/ekca     private EK CA (ECDSA P-256, made for DIR) that swtpm_localca uses
# DIR/ek-ca.pem the EK root to trust
# DIR/state    swtpm state: RSA 2048 and ECC P-384 EKs with certificates, RSA SRK
#              at 0x81000001, SHA-1 and SHA-256 PCR banks, NV locked
# DIR/eventlog.bin  event log of `boot` (removed by `start`: PCRs reset on start)
#
# Set SWTPM_EKCA_DIR to a directory to share one EK CA between several DIRs.
# Nothing is read from or written to /etc or /var/lib/swtpm-localca.
set -euo pipefail
# What this writes (state, keys, logs) is
# readable by its owner only.
umask 077
# shellcheck source=testenv/ports.sh
source "$(dirname "$0")/ports.sh"
# shellcheck source=testenv/lib.sh
source "$(dirname "$0")/lib.sh"

die() { echo "swtpm.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR [PORT] | addr DIR | boot DIR [dev|debug|oprom] | reboot DIR [dev|debug|oprom] | stop DIR"; }

need_tools() {
	local t
	for t in swtpm swtpm_setup swtpm_localca openssl; do
		command -v "$t" >/dev/null ||
			die "$t not found: apt-get install swtpm swtpm-tools tpm2-openssl (or run make test)"
	done
}

# pid_of DIR: the PID of DIR's running swtpm, or nothing.
# Only a live swtpm serving this DIR's state counts; a reused PID does not.
pid_of() { marked_pid "$1/swtpm.pid" "dir=$1/state"; }

make_ca() {
	local ca=$1 localca
	[[ -s $ca/ek-ca.pem ]] && return 0
	mkdir -p "$ca"
	chmod 700 "$ca"
	localca=$(command -v swtpm_localca)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$ca/signkey.pem" -out "$ca/issuercert.pem" -days 3650 \
		-subj "/O=sigil test/CN=sigil test EK CA $(openssl rand -hex 4)" \
		-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
		die "cannot create the EK CA in $ca"
	cat >"$ca/swtpm-localca.conf" <<-EOF
		statedir = $ca
		signingkey = $ca/signkey.pem
		issuercert = $ca/issuercert.pem
		certserial = $ca/certserial
	EOF
	printf '%s\n' --platform-manufacturer\ sigil --platform-version\ 2.0 \
		--platform-model\ swtpm >"$ca/swtpm-localca.options"
	cat >"$ca/swtpm_setup.conf" <<-EOF
		create_certs_tool = $localca
		create_certs_tool_config = $ca/swtpm-localca.conf
		create_certs_tool_options = $ca/swtpm-localca.options
		active_pcr_banks = sha1,sha256
	EOF
	cp "$ca/issuercert.pem" "$ca/ek-ca.pem" # last: marks the CA complete
}

provision() {
	local dir=$1 ca=$2
	[[ -s $dir/state/tpm2-00.permall ]] && return 0
	mkdir -p "$dir/state"
	TMPDIR=$dir swtpm_setup --tpm2 --tpmstate "$dir/state" \
		--create-ek-cert --create-platform-cert --lock-nvram --create-spk \
		--pcr-banks sha1,sha256 --config "$ca/swtpm_setup.conf" \
		--logfile "$dir/swtpm_setup.log" >/dev/null 2>&1 ||
		die "swtpm_setup failed, see $dir/swtpm_setup.log"
}

# launch DIR PORT: start the daemon; fails if a port is taken. The daemon
# inherits the port lock on fd 9, if any.
launch() {
	rm -f "$1/swtpm.pid"
	swtpm socket --tpm2 --tpmstate "dir=$1/state" \
		--server "type=tcp,port=$2,bindaddr=127.0.0.1" \
		--ctrl "type=tcp,port=$(($2 + 1)),bindaddr=127.0.0.1" \
		--flags not-need-init,startup-clear \
		--pid "file=$1/swtpm.pid" --log "file=$1/swtpm.log" --daemon
}

cmd_start() {
	local dir=$1 port=${2:-} ca try
	need_tools
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [[ -n $(pid_of "$dir") ]]; then
		cmd_addr "$dir"
		return
	fi
	ca=${SWTPM_EKCA_DIR:-$dir/ekca}
	make_ca "$ca"
	cp "$ca/ek-ca.pem" "$dir/ek-ca.pem"
	provision "$dir" "$ca"
	rm -f "$dir/eventlog.bin"
	if [[ -n $port ]]; then
		launch "$dir" "$port" || die "cannot start swtpm on ports $port and $((port + 1)), see $dir/swtpm.log"
	else
		# Retry with a fresh pair when a process outside the reservation
		# took a port between the check and swtpm's bind.
		for try in $(seq 10); do
			reserve_pair || die "no free port pair for swtpm (ports.sh)"
			launch "$dir" "$port" 2>/dev/null && break
			port=
			exec 9>&-
		done
		exec 9>&-
		[[ -n $port ]] || die "no free port pair for swtpm, see $dir/swtpm.log"
	fi
	echo "$port" >"$dir/port"
	cmd_addr "$dir"
}

cmd_addr() {
	local dir
	dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
	[[ -n $(pid_of "$dir") ]] || die "no swtpm running for $dir"
	echo "swtpm:127.0.0.1:$(<"$dir/port")"
}

cmd_boot() {
	local dir addr profile=${2:-dev}
	dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
	addr=$(cmd_addr "$dir")
	[[ -s $dir/eventlog.bin ]] && return 0 # already booted since start
	(cd "$(dirname "$0")/.." && go run ./testenv/cmd/measuredboot -tpm "$addr" -profile "$profile" -out "$dir/eventlog.bin.tmp") ||
		die "measured boot failed"
	mv "$dir/eventlog.bin.tmp" "$dir/eventlog.bin"
}

cmd_stop() {
	local dir pid i
	dir=$(cd "$1" 2>/dev/null && pwd) || return 0
	pid=$(pid_of "$dir")
	if [[ -n $pid ]]; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 250); do
			running "$pid" || break
			sleep 0.02
		done
		if running "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$dir/swtpm.pid"
}

# cmd_reboot DIR [PROFILE]: the host restarts: the TPM's PCRs reset, its
# persistent state (EKs, keys' parents, NV) stays, and the firmware measures
# PROFILE's boot. It serves on the same port, so workloads find it again.
cmd_reboot() {
	local dir port
	dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
	[[ -s $dir/port && -s $dir/state/tpm2-00.permall ]] || die "$dir holds no provisioned swtpm"
	port=$(<"$dir/port")
	cmd_stop "$dir"
	rm -f "$dir/eventlog.bin"
	launch "$dir" "$port" || die "cannot restart swtpm on ports $port and $((port + 1)), see $dir/swtpm.log"
	cmd_boot "$dir" "${2:-}"
	cmd_addr "$dir"
}

[[ $# -ge 2 ]] || usage
case $1 in
start) [[ $# -le 3 ]] || usage; cmd_start "$2" "${3:-}" ;;
addr) [[ $# -eq 2 ]] || usage; cmd_addr "$2" ;;
boot) [[ $# -eq 2 || $# -eq 3 ]] || usage; cmd_boot "$2" "${3:-}" ;;
stop) [[ $# -eq 2 ]] || usage; cmd_stop "$2" ;;
reboot) [[ $# -eq 2 || $# -eq 3 ]] || usage; cmd_reboot "$2" "${3:-}" ;;
*) usage ;;
esac
