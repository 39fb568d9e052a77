#!/usr/bin/env bash
# The web-service comparison of issue 2, regenerated with surge bench itself
# (issue 6): surge serve vs the aiohttp server vs the FastAPI app, closed
# loop at 10, 25, 50, 100 and 1000 connections, every target at each level
# in turn, in one run. Writes the results JSON and the HTML report (charts
# inline) and prints the table.
#
#   bench/sweep.sh                      # writes docs/bench-web.{json,html}
#   BENCH_OUT=/tmp/x bench/sweep.sh     # writes /tmp/x.{json,html}
#
# Settings (environment): BENCH_LEVELS (10,25,50,100,1000), BENCH_DURATION
# (5s per level), BENCH_WARMUP (1s), BENCH_SKIP_BUILD=1, SURGE_BENCH_PEERS
# (folder of the Python peers; default ../shared/peers beside the repo),
# BENCH_WAIT_QUIET (seconds to wait for cargo/rustc to finish first; 0).
#
# Targets: surge-health (GET /health on surge serve, SQLite), surge-users
# (GET /users/1, the user seeded first), aiohttp-health (GET /health),
# fastapi-health and fastapi-users (GET /health, /users/1; one uvicorn worker).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${SURGE_BENCH_PEERS:-$ROOT/../shared/peers}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LEVELS=${BENCH_LEVELS:-10,25,50,100,1000}
DURATION=${BENCH_DURATION:-5s}
WARMUP=${BENCH_WARMUP:-1s}
OUT_BASE=${BENCH_OUT:-$ROOT/docs/bench-web}
SURGE="$TARGET_DIR/release/surge"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-sweep.XXXXXX")
say() { printf '[sweep.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
trap 'stop_all; rm -rf "$WORK"' EXIT
for tool in curl python3; do command -v "$tool" >/dev/null || { say "$tool not found: bench/setup.sh"; exit 1; }; done
[[ -f "$PEERS/aiohttp_server.py" && -f "$PEERS/fastapi_app.py" ]] || { say "peers not found in $PEERS"; exit 1; }
# 1000 connections per target need file descriptors in client and servers.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building surge (release)"
  (cd "$ROOT" && cargo build --release -p surge --bin surge) >&2
fi
waited=0
while compiler_running && ((waited < ${BENCH_WAIT_QUIET:-0})); do sleep 5; waited=$((waited + 5)); done
say "machine: $(machine_state)"

start_surge surge "sqlite://$WORK/bench.db"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -d '{"name":"Alice","email":"alice@example.com","age":25}' "http://127.0.0.1:${PORT[surge]}/users")
[[ "$code" == 201 ]] || { say "seeding surge answered $code"; exit 1; }
start_aiohttp aiohttp
start_fastapi fastapi
say "servers up: surge ${PORT[surge]}, aiohttp ${PORT[aiohttp]}, fastapi ${PORT[fastapi]}"

u() { echo "http://127.0.0.1:${PORT[$1]}$2"; }
"$SURGE" bench http \
  --target "surge-health=$(u surge /health)" \
  --target "surge-users=$(u surge /users/1)" \
  --target "aiohttp-health=$(u aiohttp /health)" \
  --target "fastapi-health=$(u fastapi /health)" \
  --target "fastapi-users=$(u fastapi /users/1)" \
  --concurrency "$LEVELS" --duration "$DURATION" --warmup "$WARMUP" \
  --save "$OUT_BASE.json" --html "$OUT_BASE.html"
say "machine at the end: $(machine_state)"
