#!/usr/bin/env bash
# Reproducible benchmark of `surge crawl` against Scrapy (issue 5).
#
# Generates a site with shared/peers/gen_site.py (N pages in a random link
# graph, 20 same-site links each), serves it with a private nginx (one
# worker, bench/lib_servers.sh), and crawls it from `/` with both crawlers:
#   surge    target/release/surge crawl
#   scrapy   shared/peers/scrapy_crawl.py (Scrapy, the seed's spider)
# with the same depth limit, concurrency, robots.txt obeyed, same-site links
# only and the same fields (url, title, description, content length, link
# and image counts). BENCH_ROUNDS rounds, the order alternating each round.
# Checks that every run produced the site's exact page set (computed from
# the generated files) and that both produced the same URL set, printing
# the differences; reports pages/s, the ratio and peak RSS (/usr/bin/time),
# medians. Markdown report on stdout and in bench/out/crawl-<UTC date>.md.
#
# Install the tools first: bench/setup.sh (nginx, scrapy).
#
# Settings (environment):
#   BENCH_PAGES=5000      pages of the generated site
#   BENCH_DEPTH=10        depth limit of both crawlers (start page = depth 0; 0 = none)
#   BENCH_C=64            concurrency of both (surge -c, Scrapy CONCURRENT_REQUESTS)
#   BENCH_ROUNDS=3        rounds
#   BENCH_ONLY=           `surge` or `scrapy` to run one crawler only
#   BENCH_SKIP_BUILD=1    use target/release/surge as it is
#   SURGE_BENCH_PEERS     folder of the Python peers (default: ../shared/peers
#                         beside the repo, else /work/shared/peers)
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
DEPTH=${BENCH_DEPTH:-10}
C=${BENCH_C:-64}
ROUNDS=${BENCH_ROUNDS:-3}
ONLY=${BENCH_ONLY:-}
COMMAND="bench/crawl.sh${*:+ $*}"
for v in BENCH_PAGES BENCH_DEPTH BENCH_C BENCH_ROUNDS BENCH_ONLY BENCH_SKIP_BUILD; do
  if [[ -n "${!v+x}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

say() { printf '[crawl.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
for tool in nginx curl python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || die "$tool not found; run bench/setup.sh"
done
[[ -n "$PEERS" && -f "$PEERS/gen_site.py" && -f "$PEERS/scrapy_crawl.py" ]] \
  || die "gen_site.py / scrapy_crawl.py not found (set SURGE_BENCH_PEERS)"
[[ "$ONLY" == surge ]] || python3 -c 'import scrapy' 2>/dev/null || die "scrapy not installed; run bench/setup.sh"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$ROOT/bench/out"
OUT_MD="$ROOT/bench/out/crawl-$STAMP.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench-crawl.XXXXXX")
# shellcheck source=bench/lib_servers.sh
source "$ROOT/bench/lib_servers.sh"
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

SURGE="$TARGET_DIR/release/surge"
if [[ "$ONLY" != scrapy ]]; then
  if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    say "building surge (release)"
    (cd "$ROOT" && cargo build --release --locked -p surge >&2)
  fi
  [[ -x "$SURGE" ]] || die "$SURGE not built"
  "$SURGE" crawl --help >/dev/null 2>&1 || die "$SURGE has no crawl command"
fi

say "generating a $PAGES-page site"
python3 "$PEERS/gen_site.py" "$WORK/site" "$PAGES"
start_nginx_root site "$WORK/site" text/html /robots.txt
START="http://127.0.0.1:${PORT[site]}/"
say "site at $START (nginx pid ${PID[site]})"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY=0
compiler_running && BUSY=1

# run_surge ROUND / run_scrapy ROUND: one crawl; appends a JSON line to results.jsonl
run_surge() {
  local r=$1 out="$WORK/surge-$1.jsonl" depth_args=()
  ((DEPTH > 0)) && depth_args=(--depth "$DEPTH")
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$SURGE" crawl "$START" "${depth_args[@]}" \
    --concurrency "$C" --per-host "$C" -o "$out" --progress never >"$WORK/surge-$r.log" 2>&1 \
    || { cat "$WORK/surge-$r.log" >&2; die "surge crawl failed"; }
  read -r secs rss <"$WORK/time.txt"
  record surge "$r" "$out" "$secs" "$rss"
}
run_scrapy() {
  local r=$1 out="$WORK/scrapy-$1.jsonl" line secs rss
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" python3 "$PEERS/scrapy_crawl.py" "$START" "$DEPTH" "$out" "$C" \
    >"$WORK/scrapy-$r.log" 2>&1 || { cat "$WORK/scrapy-$r.log" >&2; die "scrapy failed"; }
  read -r _ rss <"$WORK/time.txt"
  # "scrapy: N pages in S s = P pages/s" (its own timer, after the imports)
  line=$(grep -m1 '^scrapy:' "$WORK/scrapy-$r.log") || die "no summary line from scrapy_crawl.py"
  secs=$(sed -E 's/.* in ([0-9.]+)s .*/\1/' <<<"$line")
  record scrapy "$r" "$out" "$secs" "$rss"
}
record() { # TOOL ROUND OUT SECONDS RSS_KIB
  local pages
  pages=$(grep -c '^{' "$3" || true)
  printf '{"tool":"%s","round":%s,"pages":%s,"seconds":%s,"rss_kib":%s,"load":"%s"}\n' \
    "$1" "$2" "$pages" "$4" "$5" "$(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/results.jsonl"
  say "  $1: $pages pages in $4 s = $(python3 -c "print(round($pages/max($4,0.001)))") pages/s, peak RSS $(($5 / 1024)) MiB"
}

: >"$WORK/results.jsonl"
for r in $(seq "$ROUNDS"); do
  say "round $r/$ROUNDS: $(machine_state)"
  if ((r % 2)); then order=(surge scrapy); else order=(scrapy surge); fi
  for tool in "${order[@]}"; do
    [[ -z "$ONLY" || "$ONLY" == "$tool" ]] || continue
    "run_$tool" "$r"
    sleep 1
  done
done

SURGE_VERSION=""
[[ "$ONLY" == scrapy ]] || SURGE_VERSION=$("$SURGE" --version 2>/dev/null | awk '{print $2}')
compiler_running && BUSY=1
python3 - "$WORK/meta.json" <<PY
import json, sys, importlib.metadata as m
try:
    scrapy = m.version("scrapy")
except Exception:
    scrapy = ""
json.dump({"command": """$COMMAND""", "pages": $PAGES, "depth": $DEPTH, "concurrency": $C,
           "start": "$START", "cpus": $(nproc), "load_start": "$LOAD_START",
           "load_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "busy": bool($BUSY),
           "nginx": "$(nginx -v 2>&1 | sed 's/.*nginx\///')", "scrapy_version": scrapy,
           "surge_version": "$SURGE_VERSION"}, open(sys.argv[1], "w"))
PY
python3 "$ROOT/bench/crawl_report.py" "$WORK" | tee "$OUT_MD"
say "report written to $OUT_MD"
