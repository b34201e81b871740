# Shell functions shared by the testenv scripts; source it.

# running PID: the process exists and is not a zombie waiting for its
# reaper (a zombie has exited; its parent, often init, reaps it late).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]; }

# marked_pid PIDFILE MARK prints the PID in PIDFILE if its process's
# command line names MARK (so a reused PID is not taken for it), or nothing.
marked_pid() {
	local pid
	[[ -s $1 ]] || return 0
	pid=$(head -n1 "$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
		echo "$pid"
	fi
}
