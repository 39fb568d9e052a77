#!/usr/bin/env bash
# Instructions per request (user space) of a server, counted by callgrind:
# repeatable for the same binary and input, whatever else the machine does,
# so it is the yardstick for per-request overhead (req/s on a shared 2-CPU
# machine is not). Needs valgrind and wrk.
#
#   bench/instructions.sh health   # surge /health vs bare axum /health
#   bench/instructions.sh users    # surge /users/1 (SQLite)
#   bench/instructions.sh stats    # surge /stats (the dashboard's document)
#
# Each server runs under valgrind; after one warm-up request the counters
# are zeroed, wrk drives 8 s at 10 connections, the counters are dumped, and
# the total is divided by the requests wrk completed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-instr.XXXXXX")
trap 'pkill -9 -f "callgrind-out-file=$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT
# --bin and --example together: with --example alone cargo builds only the example.
cargo build --release -q -p surge --bin surge -p surge-server --example bare_axum --manifest-path "$ROOT/Cargo.toml"

# measure NAME PORT PATH CMD... : prints NAME, requests, instructions per request
measure() {
  local name=$1 port=$2 path=$3; shift 3
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$name.%p" "$@" >/dev/null 2>"$WORK/vg.$name" &
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port$path" && break; sleep 0.3; done
  local vpid
  vpid=$(pgrep -f "callgrind-out-file=$WORK/cg.$name" | head -1)
  callgrind_control -z "$vpid" >/dev/null 2>&1
  local n
  n=$(wrk -t1 -c10 -d8s "http://127.0.0.1:$port$path" | grep -oE '^ +[0-9]+ requests' | grep -oE '[0-9]+')
  callgrind_control -d "$vpid" >/dev/null 2>&1
  sleep 1
  local total
  total=$(grep -h '^summary' "$WORK"/cg."$name".*.1 | tail -1 | awk '{print $2}')
  kill -9 "$vpid"; wait "$vpid" 2>/dev/null || true
  printf '%-12s %8d requests  %8d instructions/request\n' "$name" "$n" $((total / n))
}

surge() {
  measure "$1" "$2" "$3" "$BIN/surge" serve --bind "127.0.0.1:$2" \
    --database-url "sqlite://$WORK/surge.db" --log-level warn
}

case "${1:-health}" in
  health)
    surge surge 18610 /health
    measure bare-axum 18611 /health "$BIN/examples/bare_axum" 18611
    ;;
  users)
    "$BIN/surge" serve --bind 127.0.0.1:18613 --database-url "sqlite://$WORK/surge.db" --log-level warn >/dev/null 2>&1 &
    seed=$!
    for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18613/health && break; sleep 0.2; done
    curl -sf -o /dev/null http://127.0.0.1:18613/users -H 'content-type: application/json' \
      -d '{"name":"Alice","email":"alice@example.com","age":25}'
    kill "$seed"; wait "$seed" 2>/dev/null || true
    surge surge-users 18614 /users/1
    ;;
  stats)
    surge surge-stats 18615 /stats
    ;;
  *) echo "usage: $0 [health|users|stats]" >&2; exit 2 ;;
esac
