#!/usr/bin/env bash
# Reproducible task-queue benchmark (issue 3): surge's `surge bench queue` on
# SQLite, PostgreSQL and Redis, then the Celery peer, in one run on this machine.
#
# Each round runs, one after another:
#   surge-sqlite    surge bench queue --broker sqlite://<fresh file in a temp dir>
#   surge-postgres  surge bench queue --broker $SURGE_BENCH_POSTGRES_URL (own schema, dropped after)
#   surge-redis     surge bench queue --broker redis://127.0.0.1:<private port> (own namespace, deleted after)
#   celery          shared/peers celery_bench.py against a Celery worker (--concurrency 2)
# surge runs every phase (burn-down; submit, i.e. submissions alone to a queue no
# worker takes; end-to-end; latency) with 1 submitter, then submit and
# end-to-end again with each other submitter count of BENCH_QUEUE_SUBMITTERS.
# Celery and surge-redis use a private redis-server started by this script on a
# free port (no persistence, like the shared one), so the shared Redis is never
# touched; the Celery peer files are copied to a temp dir with their Redis port
# changed to it (nothing else changed).
#
# Writes a markdown report to stdout and to bench/out/queue-<UTC time>.md (raw
# JSON lines appended). Progress goes to stderr.
#
# Install the tools first: bench/setup.sh (celery[redis], redis-server, psql)
#
# Settings (environment):
#   BENCH_ROUNDS=3                    rounds (each runs every target once)
#   BENCH_QUEUE_TASKS=20000           surge tasks per burn-down / end-to-end phase
#   BENCH_QUEUE_SUBMITTERS="1 16 64"  surge end-to-end submitter counts (1 = like Celery's .delay() loop)
#   BENCH_QUEUE_CONCURRENCY=256       surge worker slots
#   BENCH_QUEUE_WORKERS=1             surge in-process workers
#   BENCH_QUEUE_BACKENDS="sqlite postgres redis"
#   BENCH_CELERY_TASKS=5000           Celery tasks per run (celery_bench.py N)
#   BENCH_CELERY_CONCURRENCY=2        Celery worker --concurrency (the peer's README says 2)
#   SURGE_BENCH_POSTGRES_URL          default postgres://postgres@127.0.0.1:5432/test; empty = skip PostgreSQL
#   SURGE_BENCH_REDIS_URL             default: the private redis-server this script starts
#   SURGE_BENCH_PEERS                 folder of the Python peers (default: ../shared/peers beside the repo)
#   BENCH_WAIT_QUIET=0                before each measurement, wait up to this many seconds while cargo/rustc run
#   BENCH_SKIP_BUILD=1                use target/release/surge as it is
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PEERS=${SURGE_BENCH_PEERS:-$ROOT/../shared/peers}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${BENCH_ROUNDS:-3}
TASKS=${BENCH_QUEUE_TASKS:-20000}
SUBMITTERS=${BENCH_QUEUE_SUBMITTERS:-1 16 64}
CONCURRENCY=${BENCH_QUEUE_CONCURRENCY:-256}
WORKERS=${BENCH_QUEUE_WORKERS:-1}
BACKENDS=${BENCH_QUEUE_BACKENDS:-sqlite postgres redis}
CELERY_TASKS=${BENCH_CELERY_TASKS:-5000}
CELERY_CONCURRENCY=${BENCH_CELERY_CONCURRENCY:-2}
PG_URL=${SURGE_BENCH_POSTGRES_URL-postgres://postgres@127.0.0.1:5432/test}
COMMAND="$0${*:+ $*}"
for v in BENCH_ROUNDS BENCH_QUEUE_TASKS BENCH_QUEUE_SUBMITTERS BENCH_QUEUE_CONCURRENCY BENCH_QUEUE_WORKERS \
         BENCH_QUEUE_BACKENDS BENCH_CELERY_TASKS BENCH_CELERY_CONCURRENCY SURGE_BENCH_POSTGRES_URL \
         SURGE_BENCH_REDIS_URL SURGE_BENCH_PEERS BENCH_WAIT_QUIET BENCH_SKIP_BUILD; do
  if [[ -n "${!v+x}" ]]; then COMMAND="$v=\"${!v}\" $COMMAND"; fi
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR="$BENCH/out"
OUT_MD="$OUT_DIR/queue-$STAMP.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-queue.XXXXXX")
RESULTS="$WORK/results.jsonl"
NOTES="$WORK/notes.txt"
: >"$RESULTS"
: >"$NOTES"
mkdir -p "$OUT_DIR"

say() { printf '[queue.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
note() { printf '%s\n' "$*" >>"$NOTES"; say "note: $*"; }
die() { say "ERROR: $*"; exit 1; }

for tool in python3 redis-server redis-cli celery; do
  command -v "$tool" >/dev/null || die "$tool not found; run bench/setup.sh"
done
[[ -f "$PEERS/celery_app.py" && -f "$PEERS/celery_bench.py" ]] || die "Celery peer not found in $PEERS"

# ---------------------------------------------------------------- cleanup
REDIS_PID="" CELERY_PID=""
cleanup() {
  local rc=$?
  set +e
  for p in $CELERY_PID $REDIS_PID; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 100); do
    local alive=0
    for p in $CELERY_PID $REDIS_PID; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in $CELERY_PID $REDIS_PID; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building surge (release)"
  (cd "$ROOT" && cargo build --release -p surge) >&2
fi
SURGE="$TARGET_DIR/release/surge"
[[ -x "$SURGE" ]] || die "$SURGE not built"

# ---------------------------------------------------------------- helpers
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

compiler_running() { pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; }

busy_check() { # wait (BENCH_WAIT_QUIET seconds at most), then note, when a compiler shares the CPUs
  local waited=0
  while compiler_running && ((waited < ${BENCH_WAIT_QUIET:-0})); do
    ((waited == 0)) && say "cargo/rustc running: waiting up to ${BENCH_WAIT_QUIET}s for it to finish"
    sleep 5
    waited=$((waited + 5))
  done
  if compiler_running; then
    note "round $ROUND, $1: cargo/rustc was running: its figures are disturbed"
  fi
}

# Busy and total jiffies of the whole machine (all CPUs), from /proc/stat.
machine_jiffies() {
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%d %d\n", t - $5 - $6, t }' /proc/stat
}

busy_share() { # BUSY0 TOTAL0 BUSY1 TOTAL1
  awk -v b=$(($3 - $1)) -v t=$(($4 - $2)) 'BEGIN { printf "%.3f", t ? b / t : 0 }'
}

# CPU seconds (user + system) of a process and its children still alive.
tree_cpu_seconds() {
  local hz total=0 p
  hz=$(getconf CLK_TCK)
  for p in "$1" $(pgrep -P "$1" || true); do
    [[ -r /proc/$p/stat ]] || continue
    total=$(awk -v hz="$hz" -v t="$total" '{ sub(/^.*\) /, ""); printf "%.2f", t + ($12 + $13) / hz }' "/proc/$p/stat")
  done
  echo "$total"
}

# ---------------------------------------------------------------- private Redis
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis.log" >&2; die "redis-server exited"; }
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || die "the private redis-server did not answer"
REDIS_URL=${SURGE_BENCH_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
say "private redis-server on port $REDIS_PORT (pid $REDIS_PID)"

if [[ " $BACKENDS " == *" postgres "* ]]; then
  if [[ -z "$PG_URL" ]]; then
    note "SURGE_BENCH_POSTGRES_URL is empty: PostgreSQL skipped"
    BACKENDS=${BACKENDS//postgres/}
  elif command -v psql >/dev/null && ! psql -Atq "$PG_URL" -c 'select 1' >/dev/null 2>&1; then
    note "PostgreSQL at $PG_URL is not reachable: skipped"
    BACKENDS=${BACKENDS//postgres/}
  fi
fi

# ---------------------------------------------------------------- Celery peer
CELERY_DIR="$WORK/celery"
mkdir -p "$CELERY_DIR"
cp "$PEERS/celery_app.py" "$PEERS/celery_bench.py" "$CELERY_DIR/"
sed -i "s#redis://127.0.0.1:6379/#redis://127.0.0.1:$REDIS_PORT/#g" "$CELERY_DIR/celery_app.py"
grep -q "127.0.0.1:$REDIS_PORT/0" "$CELERY_DIR/celery_app.py" || die "could not point celery_app.py at the private Redis"
(cd "$CELERY_DIR" && exec celery -A celery_app worker --concurrency "$CELERY_CONCURRENCY" --loglevel warning \
  >"$WORK/celery-worker.log" 2>&1) &
CELERY_PID=$!
say "celery worker starting (pid $CELERY_PID, --concurrency $CELERY_CONCURRENCY); warm-up of 200 tasks"
(cd "$CELERY_DIR" && timeout 120 python3 celery_bench.py 200) >"$WORK/celery-warmup.txt" 2>&1 ||
  { cat "$WORK/celery-worker.log" "$WORK/celery-warmup.txt" >&2; die "the Celery warm-up failed"; }

# ---------------------------------------------------------------- runs
url_of() {
  case $1 in
    sqlite) echo "sqlite://$WORK/surge-bench.db" ;;
    postgres) echo "$PG_URL" ;;
    redis) echo "$REDIS_URL" ;;
  esac
}

# run_surge BACKEND SUBMITTERS PHASES
run_surge() {
  local backend=$1 s=$2 phases=$3 url m0 m1 json
  url=$(url_of "$backend")
  busy_check "surge-$backend"
  say "round $ROUND: surge-$backend, phases $phases, $s submitter(s)"
  read -r -a m0 < <(machine_jiffies)
  /usr/bin/time -o "$WORK/time.txt" -f '%U %S' \
    "$SURGE" bench queue --broker "$url" --tasks "$TASKS" --concurrency "$CONCURRENCY" --workers "$WORKERS" \
    --submitters "$s" --phase "$phases" --json >"$WORK/surge.json" 2>"$WORK/surge.err" ||
    { cat "$WORK/surge.err" >&2; die "surge bench queue failed on $backend"; }
  read -r -a m1 < <(machine_jiffies)
  json=$(cat "$WORK/surge.json")
  printf '{"target":"surge-%s","round":%d,"submitters":%d,"phases":"%s","cpu_s":%s,"machine_busy":%s,"report":%s}\n' \
    "$backend" "$ROUND" "$s" "$phases" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time.txt")" \
    "$(busy_share "${m0[@]}" "${m1[@]}")" "$json" >>"$RESULTS"
  say "  -> $(python3 "$BENCH/queue_report.py" --summary "$json")"
}

run_celery() {
  local m0 m1 c0 c1 line
  busy_check celery
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  say "round $ROUND: celery, $CELERY_TASKS tasks"
  read -r -a m0 < <(machine_jiffies)
  c0=$(tree_cpu_seconds "$CELERY_PID")
  /usr/bin/time -o "$WORK/time.txt" -f '%U %S' \
    bash -c "cd '$CELERY_DIR' && exec python3 celery_bench.py $CELERY_TASKS" >"$WORK/celery.txt" 2>&1 ||
    { cat "$WORK/celery.txt" "$WORK/celery-worker.log" >&2; die "celery_bench.py failed"; }
  c1=$(tree_cpu_seconds "$CELERY_PID")
  read -r -a m1 < <(machine_jiffies)
  line=$(grep -m1 '^celery:' "$WORK/celery.txt") || { cat "$WORK/celery.txt" >&2; die "no result line from celery_bench.py"; }
  say "  -> $line"
  python3 - "$line" "$ROUND" "$CELERY_TASKS" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time.txt")" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')" "$(busy_share "${m0[@]}" "${m1[@]}")" \
    >>"$RESULTS" <<'EOF'
import json, re, sys
line, rnd, n, client_cpu, worker_cpu, busy = sys.argv[1:]
m = re.match(r"celery: enqueue (\d+)/s, end-to-end (\d+) tasks/s \(([\d.]+)s\)", line)
if not m:
    sys.exit(f"unexpected celery_bench.py output: {line!r}")
print(json.dumps({"target": "celery", "round": int(rnd), "tasks": int(n), "line": line,
                  "enqueue_per_sec": int(m[1]), "tasks_per_sec": int(m[2]), "seconds": float(m[3]),
                  "client_cpu_s": float(client_cpu), "worker_cpu_s": float(worker_cpu),
                  "machine_busy": float(busy)}))
EOF
}

python3 "$BENCH/queue_report.py" --meta "$PG_URL" "$REDIS_PORT" >"$WORK/meta.json"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  for backend in $BACKENDS; do
    first=1
    for s in $SUBMITTERS; do
      if ((first)); then
        run_surge "$backend" "$s" burn,submit,e2e,latency
        first=0
      else
        run_surge "$backend" "$s" submit,e2e
      fi
    done
  done
  run_celery
done

# ---------------------------------------------------------------- report
export BENCH_COMMAND="$COMMAND" BENCH_STAMP="$STAMP"
python3 "$BENCH/queue_report.py" "$WORK" >"$WORK/report.md"
{ cat "$WORK/report.md"
  echo
  echo "## Raw results (JSON lines)"
  echo
  echo '```'
  cat "$RESULTS"
  echo '```'
} >"$OUT_MD"
cat "$WORK/report.md"
say "report written to $OUT_MD"
