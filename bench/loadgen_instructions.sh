#!/usr/bin/env bash
# Instructions per request of the load generators (callgrind: repeatable on a
# noisy machine), against one endpoint: surge bench http (one generator
# thread, 10 connections; its lean client, the default, and --client hyper)
# and wrk (-t1 -c10).
#
#   bench/loadgen_instructions.sh URL [SURGE_BINARY]
#
# surge: two runs of N1 and N2 counted requests; (Ir(N2) - Ir(N1)) / (N2 - N1)
# leaves out start-up and report. wrk cannot stop after N requests: a 5 s run
# under callgrind, Ir / requests (its start-up is small beside it).
set -euo pipefail
URL=${1:?usage: loadgen_instructions.sh URL [SURGE_BINARY]}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SURGE=${2:-$ROOT/target/release/surge}
N1=${N1:-2000}
N2=${N2:-12000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-loadgen-ir.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }

ir() { grep -o 'Collected : [0-9]*' "$1" | grep -o '[0-9]*$'; }

declare -A SURGE_IR=()
for client in lean hyper; do
  for n in "$N1" "$N2"; do
    valgrind --tool=callgrind --callgrind-out-file="$WORK/surge.$client.$n.out" "$SURGE" bench http \
      --target "t=$URL" --client "$client" --concurrency 10 --requests "$n" --warmup 0s --threads 1 --quiet \
      >/dev/null 2>"$WORK/surge.$client.$n.err"
  done
  a=$(ir "$WORK/surge.$client.$N1.err"); b=$(ir "$WORK/surge.$client.$N2.err")
  SURGE_IR[$client]=$(( (b - a) / (N2 - N1) ))
done

if command -v wrk >/dev/null; then
  valgrind --tool=callgrind --callgrind-out-file="$WORK/wrk.out" wrk -t1 -c10 -d5s "$URL" \
    >"$WORK/wrk.txt" 2>"$WORK/wrk.err"
  reqs=$(grep -o '^ *[0-9]* requests in' "$WORK/wrk.txt" | grep -o '[0-9]*' | head -1)
  wrk_ir=$(( $(ir "$WORK/wrk.err") / reqs ))
else
  wrk_ir="wrk not installed"
fi
echo "instructions per request (user space, callgrind): surge bench http ${SURGE_IR[lean]} (--client lean, the default), ${SURGE_IR[hyper]} (--client hyper), wrk $wrk_ir"
