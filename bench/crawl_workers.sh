#!/usr/bin/env bash
# Pages/s of a distributed crawl: two `surge worker` processes on one
# PostgreSQL broker crawl a gen_site.py site served by a private nginx
# (issue 5, "report … pages/s of two workers on PostgreSQL").
#
# Per round: a fresh schema, two `surge worker --concurrency 1` processes
# (one task slot each), then `surge task submit crawl` with `"workers": 2`
# (the crawl task plus one crawl.join task: one crawler per process, each
# with BENCH_C fetches in flight) and `--wait`. Pages/s = records stored /
# wall time of the submit (from submission to the last crawler's end).
# Checks that the records are exactly the site's page count, once each.
#
# Settings (environment):
#   BENCH_PAGES=5000     pages of the generated site
#   BENCH_C=64           fetches in flight per crawler
#   BENCH_ROUNDS=3       rounds
#   BENCH_PG=postgres://postgres@127.0.0.1:5432/test   the PostgreSQL server
#   BENCH_SKIP_BUILD=1   use target/release/surge as it is
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=${SURGE_BENCH_PEERS:-}
if [[ -z "$PEERS" ]]; then
  for p in "$ROOT/../shared/peers" "$ROOT/../../shared/peers" /work/shared/peers; do
    if [[ -f "$p/gen_site.py" ]]; then PEERS=$(cd "$p" && pwd); break; fi
  done
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PAGES=${BENCH_PAGES:-5000}
C=${BENCH_C:-64}
ROUNDS=${BENCH_ROUNDS:-3}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}

say() { printf '[crawl_workers.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
for tool in nginx curl python3 psql; do
  command -v "$tool" >/dev/null || die "$tool not found; run bench/setup.sh"
done
[[ -n "$PEERS" && -f "$PEERS/gen_site.py" ]] || die "gen_site.py not found (set SURGE_BENCH_PEERS)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-crawlw.XXXXXX")
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
WORKERS=()
SCHEMAS=()
cleanup() {
  for p in "${WORKERS[@]}"; do kill "$p" 2>/dev/null || true; done
  for s in "${SCHEMAS[@]}"; do psql -q "$PG" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  stop_all; rm -rf "$WORK"
}
trap cleanup EXIT

SURGE="$TARGET_DIR/release/surge"
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  say "building surge (release)"
  (cd "$ROOT" && cargo build --release --locked -p surge >&2)
fi
[[ -x "$SURGE" ]] || die "$SURGE not built"

say "generating a $PAGES-page site"
python3 "$PEERS/gen_site.py" "$WORK/site" "$PAGES"
start_nginx_root site "$WORK/site" text/html /robots.txt
START="http://127.0.0.1:${PORT[site]}/"
EXPECT=$(find "$WORK/site" -name '*.html' | wc -l)
say "site at $START ($EXPECT HTML files)"

for r in $(seq "$ROUNDS"); do
  schema="crawlbench_$(date +%s)_$r"
  SCHEMAS+=("$schema")
  psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
  url="$PG?options=-c%20search_path%3D$schema"
  WORKERS=()
  for w in 1 2; do
    SURGE_LOG_LEVEL=error "$SURGE" worker --broker "$url" --concurrency 1 --no-scheduler \
      --fetch-allow-private >"$WORK/worker-$r-$w.log" 2>&1 &
    WORKERS+=($!)
  done
  sleep 2
  args=$(printf '{"config":{"start_urls":["%s"],"concurrency":%s,"per_host":%s,"allow_private":true},"workers":2}' "$START" "$C" "$C")
  say "round $r/$ROUNDS: $(machine_state)"
  t0=$(date +%s.%N)
  "$SURGE" task submit --broker "$url" crawl --args "$args" --wait 3600 --json >"$WORK/task-$r.json"
  t1=$(date +%s.%N)
  for p in "${WORKERS[@]}"; do kill -TERM "$p"; wait "$p" 2>/dev/null || true; done
  WORKERS=()
  pages=$(psql -qtA "$url" -c "SELECT count(*) FROM crawl_pages")
  distinct=$(psql -qtA "$url" -c "SELECT count(DISTINCT record::json->>'url') FROM crawl_pages")
  [[ "$pages" == "$distinct" ]] || die "round $r: $pages records but $distinct distinct URLs"
  secs=$(python3 -c "print(round($t1 - $t0, 3))")
  rate=$(python3 -c "print(round($pages / ($t1 - $t0)))")
  say "  2 workers: $pages pages (site: $EXPECT HTML files) in $secs s = $rate pages/s"
  printf '%s %s %s\n' "$pages" "$secs" "$rate" >>"$WORK/results.txt"
done
python3 - "$WORK/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
rates = [float(r[2]) for r in rows]
print(f"two workers on PostgreSQL: median {statistics.median(rates):.0f} pages/s over {len(rates)} rounds "
      f"({', '.join(f'{r:.0f}' for r in rates)}); pages per round: {', '.join(r[0] for r in rows)}")
PY
