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
