#!/usr/bin/env bash
# Instructions per request (user space) of `surge fetch`, counted by
# callgrind: repeatable for the same binary and input whatever else the
# machine does, so it is the yardstick for the fetch engine's per-request
# cost (req/s on a shared 2-CPU machine is not).
#
#   bench/fetch_instructions.sh [SURGE_BINARY]
#
# One local nginx (`return 200 "ok\n"`, as bench/fetch.sh); surge fetch of N1
# and of N2 URLs at concurrency C under callgrind; (Ir(N2) - Ir(N1)) /
# (N2 - N1) leaves out start-up and the summary. Then the same for the bare
# hyper-util loop (crates/surge-fetch/examples/client_cost.rs) and wrk
# (-t1 -cC, 5 s, Ir / requests) for scale.
#
# Settings: N1=2000 N2=12000 C=100 FUNCS=1 (print the top inclusive
# functions of the N2 surge run) KEEP=FILE (keep its callgrind output, for
# callgrind_annotate --tree=caller).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SURGE=${1:-$TARGET_DIR/release/surge}
N1=${N1:-2000}
N2=${N2:-12000}
C=${C:-100}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-fetch-ir.XXXXXX")
say() { printf "[fetch_instructions.sh] %s\n" "$*" >&2; }
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in valgrind nginx python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (bench/setup.sh)" >&2; exit 1; }
done

start_nginx_ok endpoint
URL="http://127.0.0.1:${PORT[endpoint]}/"

ir() { grep -o 'Collected : [0-9]*' "$1" | grep -o '[0-9]*$'; }

for n in "$N1" "$N2"; do
  python3 -c "import sys; sys.stdout.write(sys.argv[1] * int(sys.argv[2]))" "$URL"$'\n' "$n" >"$WORK/urls-$n.txt"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/surge.$n.out" "$SURGE" fetch \
    -i "$WORK/urls-$n.txt" -o /dev/null -c "$C" --summary json --progress never \
    >/dev/null 2>"$WORK/surge.$n.err"
  grep -q "\"ok\":$n," "$WORK/surge.$n.err" || { echo "surge fetch of $n URLs did not all succeed:" >&2; tail -3 "$WORK/surge.$n.err" >&2; exit 1; }
done
a=$(ir "$WORK/surge.$N1.err"); b=$(ir "$WORK/surge.$N2.err")
echo "surge fetch        $(( (b - a) / (N2 - N1) )) instructions/request"

EXAMPLE="$TARGET_DIR/release/examples/client_cost"
if [[ -x "$EXAMPLE" ]]; then
  for n in "$N1" "$N2"; do
    valgrind --tool=callgrind --callgrind-out-file="$WORK/bare.$n.out" "$EXAMPLE" hyper "$URL" "$n" "$C" \
      >/dev/null 2>"$WORK/bare.$n.err"
  done
  a=$(ir "$WORK/bare.$N1.err"); b=$(ir "$WORK/bare.$N2.err")
  echo "bare hyper-util    $(( (b - a) / (N2 - N1) )) instructions/request"
fi

if command -v wrk >/dev/null; then
  valgrind --tool=callgrind --callgrind-out-file="$WORK/wrk.out" wrk -t1 -c"$C" -d5s "$URL" \
    >"$WORK/wrk.txt" 2>"$WORK/wrk.err"
  reqs=$(grep -o '^ *[0-9]* requests in' "$WORK/wrk.txt" | grep -o '[0-9]*' | head -1)
  echo "wrk -t1            $(( $(ir "$WORK/wrk.err") / reqs )) instructions/request"
fi

if [[ -n "${KEEP:-}" ]]; then cp "$WORK/surge.$N2.out" "$KEEP"; fi
if [[ "${FUNCS:-0}" == 1 ]]; then
  callgrind_annotate --inclusive=yes "$WORK/surge.$N2.out" 2>/dev/null | head -80 || true
fi
