#!/usr/bin/env bash
# The demo as a newcomer runs it, timed: a fresh clone of this repository's HEAD in OUT, a fresh venv,
# the README's first line (its install with the network, then the run in a network namespace with only
# loopback up, as CI runs the tests), every output line stamped with the time, so that each stage's
# seconds can be read off the log. The README's and docs/performance.md's demo figures come from it.
#
#   tests/bench/fresh_demo.sh OUT [VAR=VALUE ...]     (the variables are set for the run, not the install)
#   tests/bench/fresh_demo.sh /tmp/fc ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2   # a CPU without bf16, imitated
#
# Writes OUT/demo.log (stamped lines) and OUT/demo.time (start, end, seconds in all).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [VAR=VALUE ...]" >&2; exit 2; }
out=$1; shift
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
[ -e "$out" ] && { echo "error: $out exists; give a new folder" >&2; exit 2; }
git clone -q "$repo" "$out" || exit 2
cd "$out" || exit 2
line=$(grep -m1 '# the main job' README.md | sed 's/ *#.*$//')
install=${line%% && *}
job=${line#* && }
start=$(date +%s.%N)
{
  python -m venv --upgrade-deps .venv && . .venv/bin/activate
  echo "+ $install"; eval "$install" 2>&1 | tail -2
  echo "installed"
  echo "+ $job"
  env "$@" unshare -rn sh -c "ip link set lo up && $job" 2>&1
  echo "rc=$?"
} 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$l"; done > demo.log
end=$(date +%s.%N)
python3 -c "print($start, $end, round($end - $start, 1))" > demo.time
cat demo.time
