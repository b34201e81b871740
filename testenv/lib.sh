# Shell functions shared by the testenv scripts; source it.

# running PID: the process exists and is not a zombie waiting for its
# reaper (a zombie has exited; its parent, often init, reaps it late).
running() { [[ -r /proc/$1/stat ]] && [[ $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) != Z ]]; }
