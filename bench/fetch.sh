#!/usr/bin/env bash
# Reproducible benchmark of `surge fetch` (issue 4).
#
# One fast local endpoint (nginx, `return 200 "ok\n"`, one worker), then in
# one run and on the same endpoint:
#   surge     surge fetch of N URLs at concurrency C (records to /dev/null)
#   aiohttp   the seed's semaphore-bounded aiohttp fetcher (shared/peers/aiohttp_fetch.py)
#   wrk       wrk at C connections: the load-generator limit
# each BENCH_ROUNDS times, interleaved, the order alternating from round to
# round (surge first in odd rounds, last in even ones, so neither gains from
# going first on a machine whose load drifts); then surge's peak RSS at N
# and 10×N URLs (read lazily from a file). Prints a markdown report (each
# round's figures and ratios, medians, ratios against the goals) to stdout
# and to bench/out/fetch-<UTC date>.md.
#
# req/s on a shared machine moves with what else runs: compare clients in
# one run, over several rounds. bench/fetch_instructions.sh counts
# instructions per request instead (repeatable).
#
# Install the tools first: bench/setup.sh (wrk, nginx, aiohttp).
#
# Settings (environment):
#   BENCH_N=50000         URLs per run
#   BENCH_C=100           concurrency (surge -c, aiohttp's semaphore, wrk connections)
#   BENCH_ROUNDS=3        rounds
#   BENCH_WRK_THREADS=2   wrk threads
#   BENCH_WRK_DURATION=5  seconds per wrk run
#   BENCH_SKIP_BUILD=1    use target/release/surge as it is
#   SURGE_BENCH_PEERS     folder of the Python peers (default: ../shared/peers beside the
#                         repository, else /work/shared/peers)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${SURGE_BENCH_PEERS:-}" ]]; then
  PEERS=$SURGE_BENCH_PEERS
elif [[ -f "$ROOT/../shared/peers/aiohttp_fetch.py" ]]; then
  PEERS=$ROOT/../shared/peers
else
  PEERS=/work/shared/peers
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
N=${BENCH_N:-50000}
C=${BENCH_C:-100}
ROUNDS=${BENCH_ROUNDS:-3}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_DURATION=${BENCH_WRK_DURATION:-5}
COMMAND="$0${*:+ $*}"
for v in BENCH_N BENCH_C BENCH_ROUNDS BENCH_WRK_THREADS BENCH_WRK_DURATION BENCH_SKIP_BUILD SURGE_BENCH_PEERS; do
  if [[ -n "${!v+x}" ]]; then COMMAND="$v=\"${!v}\" $COMMAND"; fi
done

say() { printf '[fetch.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
for tool in wrk nginx python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool not found; run bench/setup.sh"
done
[[ -f "$PEERS/aiohttp_fetch.py" ]] || die "aiohttp_fetch.py not found in $PEERS (set SURGE_BENCH_PEERS)"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$ROOT/bench/out"
OUT_MD="$ROOT/bench/out/fetch-$STAMP.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-fetch.XXXXXX")
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
cleanup() {
  stop_all
  rm -rf "$WORK"
}
trap cleanup EXIT

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building surge (release)"
  (cd "$ROOT" && cargo build --release --locked -p surge >&2)
fi
SURGE="$TARGET_DIR/release/surge"
[[ -x "$SURGE" ]] || die "$SURGE not built"

# ---------------------------------------------------------------- endpoint
start_nginx_ok endpoint
URL="http://127.0.0.1:${PORT[endpoint]}/"

python3 - "$URL" "$N" "$WORK" <<'PY'
import sys
url, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for name, count in (("n", n), ("10n", 10 * n)):
    with open(f"{work}/urls-{name}.txt", "w") as f:
        f.write((url + "\n") * count)
PY

# ---------------------------------------------------------------- runs
RESULTS="$WORK/results.txt"
: >"$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
surge_run() { # $1 = url file; prints "req/s rss_kib ok"
  /usr/bin/time -f '%M' -o "$WORK/time.txt" "$SURGE" fetch -i "$1" -o /dev/null -c "$C" \
    --summary json --progress never 2>"$WORK/summary.txt" || true
  python3 - "$WORK/summary.txt" "$WORK/time.txt" <<'PY'
import json, sys
summary = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
rss = int(open(sys.argv[2]).read().strip().splitlines()[-1])
print(f'{summary["requests_per_second"]:.0f} {rss} {summary["ok"]}')
PY
}
run_surge() { # $1 = round
  local rps rss ok
  read -r rps rss ok < <(surge_run "$WORK/urls-n.txt")
  [[ "$ok" == "$N" ]] || say "warning: surge: only $ok of $N ok"
  echo "surge $1 $rps" >>"$RESULTS"
}
run_aiohttp() {
  local line
  line=$(python3 "$PEERS/aiohttp_fetch.py" "$URL" "$N" "$C")
  echo "aiohttp $1 $(sed -E 's/.* ([0-9]+) req\/s.*/\1/' <<<"$line")" >>"$RESULTS"
}
run_wrk() {
  local rps
  rps=$(wrk -t"$WRK_THREADS" -c"$C" -d"${WRK_DURATION}s" "$URL" | awk '/Requests\/sec/ {printf "%.0f", $2}')
  echo "wrk $1 $rps" >>"$RESULTS"
}
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then order="surge aiohttp wrk"; else order="wrk aiohttp surge"; fi
  say "round $r/$ROUNDS ($order): load $(cut -d' ' -f1-3 /proc/loadavg)"
  for who in $order; do "run_$who" "$r"; done
  get() { awk -v w="$1" -v r="$r" '$1 == w && $2 == r {print $3}' "$RESULTS"; }
  say "  surge $(get surge) req/s, aiohttp $(get aiohttp), wrk $(get wrk)"
done
say "peak RSS at $N and $((10 * N)) URLs"
read -r _ rss_n _ < <(surge_run "$WORK/urls-n.txt")
read -r _ rss_10n ok10 < <(surge_run "$WORK/urls-10n.txt")
[[ "$ok10" == "$((10 * N))" ]] || say "warning: surge at 10N: only $ok10 ok"

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$N" "$C" "$ROUNDS" "$rss_n" "$rss_10n" "$COMMAND" "$WRK_THREADS" "$(nproc)" "$LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee "$OUT_MD"
import statistics, sys
results, n, c, rounds, rss_n, rss_10n, command, wrk_threads, cpus, load = sys.argv[1:]
runs = {}
for line in open(results):
    who, r, rps = line.split()
    runs.setdefault(who, []).append(float(rps))
med = {k: statistics.median(v) for k, v in runs.items()}
n, rss_n, rss_10n = int(n), int(rss_n) / 1024, int(rss_10n) / 1024
vs_aiohttp = med["surge"] / med["aiohttp"]
vs_wrk = med["surge"] / med["wrk"]
growth = rss_10n / rss_n
print(f"## surge fetch: {n:,} GETs of a local nginx `return 200` at concurrency {c}\n")
print(f"Command: `{command}`; {cpus} CPUs shared by nginx (1 worker), the client and wrk; "
      f"medians of {rounds} rounds (order alternating); load average at the start / end {load}.\n")
print("| client | req/s (median) | rounds |")
print("|---|---:|---|")
for who in ("surge", "aiohttp", "wrk"):
    label = {"surge": "surge fetch", "aiohttp": "aiohttp peer", "wrk": f"wrk -t{wrk_threads} (load-generator limit)"}[who]
    print(f"| {label} | {med[who]:,.0f} | {', '.join(f'{x:,.0f}' for x in runs[who])} |")
print()
print("| round | surge ÷ aiohttp | surge ÷ wrk |")
print("|---|---:|---:|")
for i, (s, a, w) in enumerate(zip(runs["surge"], runs["aiohttp"], runs["wrk"]), 1):
    print(f"| {i} | {s / a:.2f}× | {100 * s / w:.0f}% |")
print()
print("| goal | measured | |")
print("|---|---:|---|")
print(f"| ≥ 5× aiohttp | {vs_aiohttp:.2f}× | {'met' if vs_aiohttp >= 5 else 'missed'} |")
print(f"| ≥ 70% of wrk | {100 * vs_wrk:.0f}% | {'met' if vs_wrk >= 0.7 else 'missed'} |")
print(f"| peak RSS flat from {n:,} to {10 * n:,} URLs | {rss_n:.1f} → {rss_10n:.1f} MiB ({growth:.2f}×) | {'met' if growth <= 1.25 else 'missed'} |")
PY
say "report written to $OUT_MD"
