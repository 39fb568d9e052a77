#!/usr/bin/env bash
# Is surge's load generator the bottleneck? surge bench http against itself
# and against wrk, same machine, same endpoint, same connections (issue 6).
#
# Starts nginx (one worker, a 15-byte static file), the bare axum route
# (crates/surge-server/examples/bare_axum.rs) and surge serve (GET /health:
# surge benchmarked by itself), then for each, ROUNDS times, alternating:
# wrk -t2 -cC -dD, surge bench http (2 threads, C connections, D measured
# after a 1 s warm-up; the default client, lean), surge a second time (the
# run-to-run spread), and surge with --client hyper (the client it had
# before). Client CPU time per request comes from /usr/bin/time. Prints a
# markdown report (and writes bench/out/loadgen-*.md).
#
#   bench/loadgen.sh                   # BENCH_ROUNDS=3 BENCH_DURATION=10 BENCH_CONNECTIONS=100
#   BENCH_INSTRUCTIONS=1 bench/loadgen.sh   # also callgrind instructions per request
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-100}
THREADS=${BENCH_THREADS:-2}
SURGE="$TARGET_DIR/release/surge"
BARE="$TARGET_DIR/release/examples/bare_axum"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-loadgen.XXXXXX")
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
say() { printf '[loadgen.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
trap 'stop_all; rm -rf "$WORK"' EXIT
for tool in wrk nginx curl python3; do command -v "$tool" >/dev/null || { say "$tool not found: bench/setup.sh"; exit 1; }; done
ulimit -n 65536 2>/dev/null || true

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building (release)"
  (cd "$ROOT" && cargo build --release -p surge --bin surge && cargo build --release -p surge-server --example bare_axum) >&2
fi

START_STATE=$(machine_state)
start_nginx nginx
start_bare_axum bare-axum
start_surge surge-serve "sqlite://$WORK/bench.db"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

cpu_of() { awk '/^CPU / {print $2 + $3}' "$1"; }

for name in nginx bare-axum surge-serve; do
  url="http://127.0.0.1:${PORT[$name]}/health"
  wrk -t"$THREADS" -c"$CONNS" -d2s "$url" >/dev/null # warm the server up
  for ((round = 1; round <= ROUNDS; round++)); do
    say "$name round $round/$ROUNDS ($(machine_state))"
    /usr/bin/time -f 'CPU %U %S' -o "$WORK/time" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$url" >"$WORK/wrk.txt"
    reqs=$(grep -o '^ *[0-9]* requests in' "$WORK/wrk.txt" | grep -o '[0-9]*' | head -1)
    rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    printf '%s\twrk\t%d\t%s\t%s\t%s\n' "$name" "$round" "$rps" "$reqs" "$(cpu_of "$WORK/time")" >>"$RESULTS"
    for run in surge surge-again surge-hyper; do
      client=auto
      [[ $run == surge-hyper ]] && client=hyper
      /usr/bin/time -f 'CPU %U %S' -o "$WORK/time" "$SURGE" bench http --target "t=$url" --client "$client" \
        --concurrency "$CONNS" --duration "${DURATION}s" --warmup 1s --threads "$THREADS" --quiet --json >"$WORK/s.json"
      read -r rps reqs < <(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["suites"][0]["series"][0]["points"][0]; print(p["throughput"], p["requests"])' "$WORK/s.json")
      # surge's CPU includes its 1 s warm-up: count its requests at the measured rate.
      total=$(python3 -c "print(int($reqs + $rps * 1.0))")
      printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$name" "$run" "$round" "$rps" "$total" "$(cpu_of "$WORK/time")" >>"$RESULTS"
    done
  done
done
END_STATE=$(machine_state)

IR=""
if [[ "${BENCH_INSTRUCTIONS:-0}" == 1 ]]; then
  IR=$("$ROOT/bench/loadgen_instructions.sh" "http://127.0.0.1:${PORT[bare-axum]}/health" "$SURGE")
fi

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$START_STATE" "$END_STATE" "$IR" <<'PY' | tee "$OUT/loadgen-$STAMP.md"
import sys, statistics as st
path, rounds, dur, conns, threads, s0, s1, ir = sys.argv[1:]
rows = [l.rstrip('\n').split('\t') for l in open(path) if l.strip()]
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
print(f"## Load generator: surge bench http vs wrk\n")
print(f"- {rounds} rounds per endpoint, alternating; each run {dur} s at {conns} connections, {threads} client threads; "
      f"wrk -t{threads} -c{conns} -d{dur}s; surge bench http --concurrency {conns} --duration {dur}s --warmup 1s --threads {threads}")
print(f"- machine: {cpu}, nproc {__import__('os').cpu_count()}; server and client share the CPUs; at start: {s0}; at end: {s1}\n")
print("| endpoint | client | req/s (median) | each round | client CPU µs / request | vs wrk (req/s) |")
print("|---|---|---:|---|---:|---:|")
for ep in dict.fromkeys(r[0] for r in rows):
    med = {}
    for client in ("wrk", "surge", "surge-again", "surge-hyper"):
        rs = [r for r in rows if r[0] == ep and r[1] == client]
        rps = [float(r[3]) for r in rs]
        cpu_us = st.median(float(r[5]) / max(int(float(r[4])), 1) * 1e6 for r in rs)
        med[client] = st.median(rps)
        ratio = "" if client == "wrk" else f"{med[client] / med['wrk'] * 100:.1f}%"
        print(f"| {ep} | {client} | {med[client]:,.0f} | {' / '.join(f'{x:,.0f}' for x in rps)} | {cpu_us:.1f} | {ratio} |")
if ir:
    print(f"\n{ir}")
PY
