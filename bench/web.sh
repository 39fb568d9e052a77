#!/usr/bin/env bash
# Reproducible web-service benchmark for `surge serve` (issue 2).
#
# Starts, on this machine and in one run:
#   surge-sqlite    surge serve on a fresh SQLite file
#   surge-postgres  surge serve on PostgreSQL, in a schema of its own (skipped if unreachable)
#   aiohttp         shared/peers/aiohttp_server.py
#   fastapi         shared/peers/fastapi_app.py under uvicorn, one worker
#   bare-axum       crates/surge-server/examples/bare_axum.rs (one route, no middleware)
# then measures with wrk (same threads and duration for every target):
#   health   GET /health at 100 connections: surge vs aiohttp vs bare axum
#   users    GET /users/1 at 100 connections: surge (SQLite, PostgreSQL) vs FastAPI
#   data     GET /api/data?delay_ms=100 at 2000 connections: surge vs the ideal rate, and aiohttp
#   memory   RSS idle and while holding 10,000 idle keep-alive connections
# and writes a markdown report to stdout and to bench/out/web-<UTC date>.md.
# Progress goes to stderr.
#
# Install the tools first: bench/setup.sh
#
# Settings (environment):
#   BENCH_DURATION=10            seconds per measured wrk run
#   BENCH_WARMUP=2               seconds of an unmeasured wrk run before each measured one
#   BENCH_THREADS=2              wrk threads
#   BENCH_ROUNDS=3               rounds of the wrk scenarios (each round runs every target once)
#   BENCH_HOLD_CONNECTIONS=10000 connections held open in the memory scenario
#   BENCH_SCENARIOS="health users data memory"
#   SURGE_BENCH_POSTGRES_URL     default postgres://postgres@127.0.0.1:5432/test; empty = skip PostgreSQL
#   SURGE_BENCH_PEERS            folder of the Python peers (default: ../shared/peers beside the repo)
#   BENCH_WAIT_QUIET=0           before each measurement, wait up to this many seconds while cargo/rustc run
#   BENCH_SKIP_BUILD=1           use the binaries already in target/release
#   BENCH_NO_SURGE=1             harness development only: run the peers and bare axum, no surge
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PEERS=${SURGE_BENCH_PEERS:-$ROOT/../shared/peers}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
THREADS=${BENCH_THREADS:-2}
HOLD_N=${BENCH_HOLD_CONNECTIONS:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
SCENARIOS=${BENCH_SCENARIOS:-health users data memory}
PG_URL=${SURGE_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
NO_SURGE=${BENCH_NO_SURGE:-0}
COMMAND="$0${*:+ $*}"
for v in BENCH_DURATION BENCH_WARMUP BENCH_THREADS BENCH_ROUNDS BENCH_HOLD_CONNECTIONS BENCH_SCENARIOS \
         SURGE_BENCH_POSTGRES_URL BENCH_SKIP_BUILD BENCH_NO_SURGE SURGE_BENCH_PEERS BENCH_WAIT_QUIET; do
  if [[ -n "${!v+x}" ]]; then COMMAND="$v=\"${!v}\" $COMMAND"; fi
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR="$BENCH/out"
OUT_MD="$OUT_DIR/web-$STAMP.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-web.XXXXXX")
RESULTS="$WORK/results.jsonl"
NOTES="$WORK/notes.txt"
: >"$RESULTS"
: >"$NOTES"
mkdir -p "$OUT_DIR"

say() { printf '[web.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
note() { printf '%s\n' "$*" >>"$NOTES"; say "note: $*"; }
die() { say "ERROR: $*"; exit 1; }
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || die "$tool not found; run bench/setup.sh"
done
[[ -f "$PEERS/aiohttp_server.py" && -f "$PEERS/fastapi_app.py" ]] || die "peers not found in $PEERS"

# ---------------------------------------------------------------- cleanup
declare -a PIDS=()
declare -A PID=() PORT=()
PG_SCHEMA=""
cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ -n "$PG_SCHEMA" ]]; then
    psql -q "$PG_URL" -c "DROP SCHEMA IF EXISTS $PG_SCHEMA CASCADE" >/dev/null 2>&1 ||
      say "could not drop schema $PG_SCHEMA"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- limits
# 2000 wrk connections and 10,000 held connections need file descriptors in
# the client and in the server (children inherit this limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if ((NOFILE < 65536)); then
  note "open-file limit raised only to $NOFILE (hard limit); 65536 was asked for"
fi

# ---------------------------------------------------------------- build
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building (release): bare_axum example and surge"
  (cd "$ROOT" && cargo build --release -p surge-server --example bare_axum) >&2
  if [[ "$NO_SURGE" != 1 ]]; then
    (cd "$ROOT" && cargo build --release -p surge) >&2
  fi
fi
SURGE="$TARGET_DIR/release/surge"
BARE="$TARGET_DIR/release/examples/bare_axum"
[[ -x "$BARE" ]] || die "$BARE not built"
[[ "$NO_SURGE" == 1 || -x "$SURGE" ]] || die "$SURGE not built"
if [[ "$NO_SURGE" == 1 ]]; then
  note "BENCH_NO_SURGE=1: surge was not run (harness development run)"
fi

# ---------------------------------------------------------------- helpers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

socket_count() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }

# wait_listening NAME PATTERN: wait for the "... listening on http://IP:PORT" line on stdout
wait_listening() {
  local name=$1 pattern=$2 line=""
  for _ in $(seq 300); do
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name exited during start"; }
    line=$(grep -m1 -o "$pattern http://[0-9.]*:[0-9]*" "$WORK/$name.out" || true)
    if [[ -n "$line" ]]; then PORT[$name]=${line##*:}; return 0; fi
    sleep 0.1
  done
  cat "$WORK/$name.err" >&2
  die "$name did not print its listening line within 30 s"
}

# wait_http NAME PATH: wait until the server answers 200
wait_http() {
  local name=$1 path=$2 code=""
  for _ in $(seq 300); do
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name exited during start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${PORT[$name]}$path" || true)
    [[ "$code" == 200 ]] && return 0
    sleep 0.1
  done
  die "$name did not answer 200 on $path within 30 s (last status: $code)"
}

track() { PID[$1]=$2; PIDS+=("$2"); }

start_surge() { # NAME DATABASE_URL
  local name=$1 url=$2
  "$SURGE" serve --bind 127.0.0.1:0 --database-url "$url" --log-level warn \
    >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_listening "$name" "surge listening on"
  wait_http "$name" /health
  say "$name up on port ${PORT[$name]} (pid ${PID[$name]})"
}

start_bare() { # NAME
  local name=$1
  "$BARE" 0 >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_listening "$name" "bare_axum listening on"
  wait_http "$name" /health
  say "$name up on port ${PORT[$name]} (pid ${PID[$name]})"
}

start_aiohttp() { # NAME
  local name=$1
  PORT[$name]=$(free_port)
  python3 "$PEERS/aiohttp_server.py" "${PORT[$name]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_http "$name" /health
  say "$name up on port ${PORT[$name]} (pid ${PID[$name]})"
}

start_fastapi() { # NAME
  # One uvicorn worker (uvicorn's default, and how the seed runs it). The
  # access log is off and the log level is warning, as for surge
  # (--log-level warn) and aiohttp (access_log=None): logging is not measured.
  local name=$1
  PORT[$name]=$(free_port)
  (cd "$PEERS" && exec python3 -m uvicorn fastapi_app:app --host 127.0.0.1 --port "${PORT[$name]}" \
    --log-level warning --no-access-log) >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_http "$name" /health
  say "$name up on port ${PORT[$name]} (pid ${PID[$name]})"
}

stop_server() { # NAME
  local p=${PID[$1]}
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

seed_users() { # NAME: users 1..5 (ids 1 and 2 are the ones FastAPI's fake database has)
  local name=$1 i=0 code
  for u in 'Alice alice@example.com 25' 'Bob bob@example.com 30' 'Carol carol@example.com 41' \
           'Dave dave@example.com 35' 'Eve eve@example.com 28'; do
    read -r n e a <<<"$u"
    i=$((i + 1))
    code=$(curl -s -o "$WORK/seed.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      -d "{\"name\":\"$n\",\"email\":\"$e\",\"age\":$a}" "http://127.0.0.1:${PORT[$name]}/users")
    [[ "$code" == 201 ]] || die "$name: POST /users $n answered $code: $(cat "$WORK/seed.json")"
  done
  code=$(curl -s -o "$WORK/seed.json" -w '%{http_code}' "http://127.0.0.1:${PORT[$name]}/users/1")
  [[ "$code" == 200 ]] || die "$name: GET /users/1 answered $code after seeding: $(cat "$WORK/seed.json")"
  say "$name seeded ($i users)"
}

record_rss() { # SCENARIO NAME KIND: RSS right now, as a JSON line
  printf '{"scenario":"%s","target":"%s","kind":"%s","rss_kb":%s}\n' "$1" "$2" "$3" "$(rss_kb "${PID[$2]}")" >>"$RESULTS"
}

compiler_running() { pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; }

busy_check() { # wait (BENCH_WAIT_QUIET seconds at most), then warn, when a compiler shares the CPUs
  local waited=0
  while compiler_running && ((waited < ${BENCH_WAIT_QUIET:-0})); do
    ((waited == 0)) && say "cargo/rustc running: waiting up to ${BENCH_WAIT_QUIET}s for it to finish"
    sleep 5
    waited=$((waited + 5))
  done
  if compiler_running; then
    note "cargo/rustc was running during $1: its figures are disturbed"
  fi
}

# The kernel's listen-queue counters (this network namespace, all sockets):
# a server whose accept queue overflows during wrk's connection burst makes
# clients retransmit (1 s and more), which shows as a p99 of a second or so.
listen_counters() {
  awk '/^TcpExt:/ { if (!h) { split($0, k); h = 1 } else {
    for (i = 2; i <= NF; i++) v[k[i]] = $i
    printf "%d %d %d\n", v["ListenOverflows"], v["ListenDrops"], v["SyncookiesSent"] } }' /proc/net/netstat
}

# CPU seconds (user + system, all threads) a process has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}

# Busy and total jiffies of the whole machine (all CPUs), from /proc/stat.
machine_jiffies() {
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d\n", t - $5 - $6, t }' /proc/stat
}

# CPU seconds used by this shell's finished children (the `times` builtin,
# run in this shell, not in a pipeline's subshell, which has no children) into
# the variable named $1.
children_cpu_seconds() {
  times >"$WORK/times.txt"
  printf -v "$1" '%s' "$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; printf "%.2f", t }' "$WORK/times.txt")"
}

# run_wrk SCENARIO TARGET CONNECTIONS URL: warm-up run, then the measured run
run_wrk() {
  local scenario=$1 target=$2 conns=$3 url=$4 json
  busy_check "$scenario/$target"
  say "$scenario: $target (round $ROUND), $conns connections, ${WARMUP}s warm-up + ${DURATION}s: $url"
  wrk -t"$THREADS" -c"$conns" -d"${WARMUP}s" --timeout 10s "$url" >/dev/null
  local before after srv0 srv1 wrk0 wrk1 m0 m1
  read -r -a before < <(listen_counters)
  read -r -a m0 < <(machine_jiffies)
  srv0=$(cpu_seconds "${PID[$target]}")
  children_cpu_seconds wrk0
  wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --timeout 10s --latency -s "$BENCH/wrk_report.lua" "$url" \
    >"$WORK/wrk.txt" 2>&1 || { cat "$WORK/wrk.txt" >&2; die "wrk failed for $target"; }
  children_cpu_seconds wrk1
  srv1=$(cpu_seconds "${PID[$target]}")
  read -r -a m1 < <(machine_jiffies)
  read -r -a after < <(listen_counters)
  { echo "### round $ROUND, $scenario / $target: wrk -t$THREADS -c$conns -d${DURATION}s --timeout 10s --latency $url"
    grep -v '^WRKJSON' "$WORK/wrk.txt"; echo; } >>"$WORK/wrk-raw.txt"
  json=$(grep -m1 '^WRKJSON ' "$WORK/wrk.txt" | cut -d' ' -f2-)
  [[ -n "$json" ]] || { cat "$WORK/wrk.txt" >&2; die "no WRKJSON line from wrk for $target"; }
  printf '{"scenario":"%s","target":"%s","round":%d,"connections":%d,"url":"%s","wrk":%s,"listen_overflows":%d,"listen_drops":%d,"syncookies_sent":%d,"server_cpu_s":%s,"wrk_cpu_s":%s,"machine_busy":%s}\n' \
    "$scenario" "$target" "$ROUND" "$conns" "$url" "$json" $((after[0] - before[0])) $((after[1] - before[1])) \
    $((after[2] - before[2])) "$(awk -v a="$srv0" -v b="$srv1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$wrk0" -v b="$wrk1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v b=$((m1[0] - m0[0])) -v t=$((m1[1] - m0[1])) 'BEGIN { printf "%.3f", t ? b / t : 0 }')" >>"$RESULTS"
  if ((after[0] > before[0] || after[2] > before[2])); then
    say "  listen queue overflowed during the run: ListenOverflows +$((after[0] - before[0])), SyncookiesSent +$((after[2] - before[2]))"
  fi
  say "  -> $(python3 "$BENCH/web_report.py" --summary "$json")"
}

# hold_rss SCENARIO NAME: RSS of NAME while HOLD_N idle keep-alive connections are held
hold_rss() {
  local scenario=$1 name=$2 hp status established failed sockets held after open_now
  local log="$WORK/hold-$name.log"
  busy_check "$scenario/$name"
  say "$scenario: $name: opening $HOLD_N keep-alive connections"
  python3 "$BENCH/hold_connections.py" 127.0.0.1 "${PORT[$name]}" "$HOLD_N" --hold 600 >"$log" 2>&1 &
  hp=$!
  PIDS+=("$hp")
  status=""
  for _ in $(seq 1800); do # up to 180 s to open them all
    if grep -q -E '^(ALL_ESTABLISHED|ESTABLISHED .* FAILED)' "$log"; then status=ready; break; fi
    kill -0 "$hp" 2>/dev/null || break
    sleep 0.1
  done
  if [[ "$status" == ready ]]; then
    sleep 2 # let the server settle after the last accept
    held=$(rss_kb "${PID[$name]}")
    sockets=$(socket_count "${PID[$name]}")
    established=$(grep -m1 -o -E '^(ALL_ESTABLISHED [0-9]+|ESTABLISHED [0-9]+)' "$log" | grep -o '[0-9]*$')
    failed=$(grep -m1 -o -E 'FAILED [0-9]+' "$log" | grep -o '[0-9]*$' || echo 0)
  else
    held=null sockets=null established=0 failed=$HOLD_N
    note "$name: hold_connections.py did not finish opening connections: $(tail -3 "$log" | tr '\n' ' ')"
  fi
  kill -TERM "$hp" 2>/dev/null || true
  wait "$hp" 2>/dev/null || true
  open_now=$(grep -o -E 'CLOSING OPEN [0-9]+' "$log" | grep -o '[0-9]*$' || echo null)
  if grep -q '^first error' "$log"; then note "$name: $(grep -m1 '^first error' "$log")"; fi
  sleep 2
  after=$(rss_kb "${PID[$name]}")
  printf '{"scenario":"%s","target":"%s","kind":"hold","n":%d,"established":%s,"failed":%s,"rss_kb":%s,"server_sockets":%s,"open_at_close":%s,"rss_after_kb":%s}\n' \
    "$scenario" "$name" "$HOLD_N" "${established:-0}" "${failed:-0}" "$held" "$sockets" "${open_now:-null}" "$after" >>"$RESULTS"
  say "  -> RSS ${held} kB with ${established:-0} held (server sockets $sockets), ${after} kB after release"
}

metrics_snapshot() { # NAME: keep surge's /metrics (status codes, shed counts) for the report
  curl -s --max-time 5 "http://127.0.0.1:${PORT[$1]}/metrics" >"$WORK/metrics-$1.txt" || true
}

# ---------------------------------------------------------------- PostgreSQL
SURGE_PG_URL=""
if [[ "$NO_SURGE" != 1 && -n "$PG_URL" ]] && has users; then
  if command -v psql >/dev/null && psql -q "$PG_URL" -c 'select 1' >/dev/null 2>&1; then
    PG_SCHEMA="surge_bench_$(python3 -c 'import uuid; print(uuid.uuid4().hex)')"
    psql -q "$PG_URL" -c "CREATE SCHEMA $PG_SCHEMA" >/dev/null
    sep='?'; [[ "$PG_URL" == *\?* ]] && sep='&'
    SURGE_PG_URL="$PG_URL${sep}options=-c%20search_path%3D$PG_SCHEMA"
  else
    note "PostgreSQL at $PG_URL is not reachable (psql): surge-postgres was not measured"
  fi
fi

# ---------------------------------------------------------------- machine
META="$WORK/meta.json"
PG_VERSION=""
[[ -z "$SURGE_PG_URL" ]] || PG_VERSION=$(psql -qtA "$PG_URL" -c 'show server_version' 2>/dev/null || true)
STAMP="$STAMP" COMMAND="$COMMAND" ROOT="$ROOT" DURATION="$DURATION" WARMUP="$WARMUP" THREADS="$THREADS" \
  HOLD_N="$HOLD_N" ROUNDS="$ROUNDS" NOFILE="$NOFILE" PG_VERSION="$PG_VERSION" python3 "$BENCH/web_report.py" --meta >"$META"

# ---------------------------------------------------------------- servers
say "starting servers"
if [[ "$NO_SURGE" != 1 ]]; then
  start_surge surge-sqlite "sqlite://$WORK/bench.db"
  seed_users surge-sqlite
  sleep 1
  record_rss memory surge-sqlite idle
  if [[ -n "$SURGE_PG_URL" ]]; then
    start_surge surge-postgres "$SURGE_PG_URL"
    seed_users surge-postgres
    sleep 1
    record_rss memory surge-postgres idle
  fi
fi
start_aiohttp aiohttp
start_fastapi fastapi
start_bare bare-axum

# ---------------------------------------------------------------- scenarios
# Each round runs every target once, one after another; with several rounds
# the targets alternate, so a slow spell of the shared machine does not land
# on one target only. The report gives the median round and every round.
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  say "round $ROUND of $ROUNDS"
  if has health; then
    [[ "$NO_SURGE" == 1 ]] || run_wrk health surge-sqlite 100 "http://127.0.0.1:${PORT[surge-sqlite]}/health"
    run_wrk health aiohttp 100 "http://127.0.0.1:${PORT[aiohttp]}/health"
    run_wrk health bare-axum 100 "http://127.0.0.1:${PORT[bare-axum]}/health"
  fi
  if has users; then
    if [[ "$NO_SURGE" != 1 ]]; then
      run_wrk users surge-sqlite 100 "http://127.0.0.1:${PORT[surge-sqlite]}/users/1"
      [[ -z "$SURGE_PG_URL" ]] || run_wrk users surge-postgres 100 "http://127.0.0.1:${PORT[surge-postgres]}/users/1"
    fi
    run_wrk users fastapi 100 "http://127.0.0.1:${PORT[fastapi]}/users/1"
  fi
  if has data; then
    [[ "$NO_SURGE" == 1 ]] || run_wrk data surge-sqlite 2000 "http://127.0.0.1:${PORT[surge-sqlite]}/api/data?delay_ms=100"
    run_wrk data aiohttp 2000 "http://127.0.0.1:${PORT[aiohttp]}/api/data"
  fi
done
if [[ "$NO_SURGE" != 1 ]]; then
  metrics_snapshot surge-sqlite
  [[ -z "$SURGE_PG_URL" ]] || metrics_snapshot surge-postgres
fi

if has memory; then
  # Fresh servers, so that the figures are not those of a heap grown by the
  # load scenarios: idle RSS right after start (+ seeding), then while holding.
  for name in aiohttp bare-axum; do stop_server "$name"; done
  if [[ "$NO_SURGE" != 1 ]]; then
    stop_server surge-sqlite
    start_surge surge-mem "sqlite://$WORK/mem.db"
    seed_users surge-mem
    sleep 1
    record_rss memory surge-mem idle
    hold_rss memory surge-mem
    stop_server surge-mem
  fi
  start_aiohttp aiohttp-mem
  sleep 1
  record_rss memory aiohttp-mem idle
  hold_rss memory aiohttp-mem
  stop_server aiohttp-mem
  start_bare bare-axum-mem
  sleep 1
  record_rss memory bare-axum-mem idle
  hold_rss memory bare-axum-mem
  stop_server bare-axum-mem
fi

# surge's own log lines at warn and above, for the report
for name in surge-sqlite surge-postgres surge-mem; do
  [[ -f "$WORK/$name.err" ]] && cp "$WORK/$name.err" "$WORK/stderr-$name.txt"
done

# ---------------------------------------------------------------- report
python3 "$BENCH/web_report.py" "$WORK" >"$WORK/report.md"
cp "$WORK/report.md" "$OUT_MD"
{ echo; echo "## Raw wrk output"; echo; echo '```'; cat "$WORK/wrk-raw.txt" 2>/dev/null; echo '```'; } >>"$OUT_MD"
cat "$WORK/report.md"
say "report written to $OUT_MD"
