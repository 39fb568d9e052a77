#!/usr/bin/env bash
# surge-core's limiters, measured three ways (one command, markdown out):
#
#   1. acquire + release in ns per operation, uncontended and contended
#      (64 tasks on 2 threads), beside tokio's semaphore: best of 3 runs.
#   2. the same in instructions per operation, counted by callgrind:
#      repeatable whatever else the machine does. Each case runs at N and
#      2N iterations; the difference divided by N removes start-up costs.
#   3. adaptive (gradient, vegas) against static limits, through LimitLayer
#      and hyper, against a local server of capacity C (20 ms a request,
#      the rest queued) at C = 8, 32, 128, driven by 512 closed-loop callers
#      whose requests time out after 250 ms.
#
#   bench/limits.sh                 # all three
#   bench/limits.sh micro|instr|server
#   ITERATIONS=2000000 INSTR_ITERATIONS=20000 SECONDS_PER_RUN=6 bench/limits.sh
#
# Needs valgrind for part 2 (bench/setup.sh installs it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/limits"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-limits.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cargo build --release -q -p surge-core --example limits --manifest-path "$ROOT/Cargo.toml"

what=${1:-all}
echo "# surge-core limiters"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), rustc running: $(pgrep -c rustc || true)"
echo

if [[ $what == all || $what == micro ]]; then
  echo "## acquire + release, ns per operation (best of 3)"
  echo
  "$BIN" micro "${ITERATIONS:-2000000}"
  echo
fi

if [[ $what == all || $what == instr ]]; then
  n=${INSTR_ITERATIONS:-20000}
  echo "## acquire + release, instructions per operation (callgrind, ${n} vs $((2 * n)) iterations)"
  echo
  echo "| case | instructions per acquire+release |"
  echo "|---|---:|"
  for case in static-try static-acquire adaptive-success tokio-try tokio-acquire \
              static-contended-4 adaptive-contended-4 tokio-contended-4; do
    totals=()
    for iterations in "$n" $((2 * n)); do
      out="$WORK/cg.$case.$iterations"
      valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" instr "$case" "$iterations" \
        >/dev/null 2>"$WORK/vg.$case.$iterations"
      totals+=("$(grep -h '^summary:' "$out" | awk '{s += $2} END {print s}')")
    done
    echo "| \`$case\` | $(( (totals[1] - totals[0]) / n )) |"
  done
  echo
fi

if [[ $what == all || $what == server ]]; then
  echo "## adaptive vs static against an overloaded server (${SECONDS_PER_RUN:-6} s a run, the first third not counted)"
  echo
  "$BIN" server "${SECONDS_PER_RUN:-6}"
fi
