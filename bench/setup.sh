#!/usr/bin/env bash
# Install what bench/web.sh, bench/queue.sh, bench/fetch.sh and bench/crawl.sh
# need on a fresh Debian machine: wrk (load generator), redis-server (queue.sh
# starts a private one), nginx (fetch.sh's endpoint, crawl.sh's static site)
# and the Python peers' packages (aiohttp, FastAPI, uvicorn with
# uvloop/httptools, celery with its Redis transport, scrapy). Idempotent: skips whatever is already there.
# PostgreSQL itself is not installed here: web.sh uses SURGE_BENCH_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test) and skips PostgreSQL if
# the server is not reachable; psql comes with the postgresql-client package.
set -euo pipefail

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi

apt_pkgs=()
command -v wrk >/dev/null || apt_pkgs+=(wrk)
command -v nginx >/dev/null || apt_pkgs+=(nginx-light)  # bench/fetch.sh's endpoint
command -v curl >/dev/null || apt_pkgs+=(curl)
command -v psql >/dev/null || apt_pkgs+=(postgresql-client)
command -v redis-server >/dev/null || apt_pkgs+=(redis-server)
command -v nginx >/dev/null || apt_pkgs+=(nginx-light)   # bench/loadgen.sh
command -v valgrind >/dev/null || apt_pkgs+=(valgrind)     # bench/loadgen_instructions.sh
if ((${#apt_pkgs[@]})); then
  $SUDO apt-get update
  $SUDO apt-get install -y "${apt_pkgs[@]}"
fi

if ! python3 -c 'import aiohttp, fastapi, uvicorn, uvloop, httptools' 2>/dev/null; then
  python3 -m pip install aiohttp fastapi 'uvicorn[standard]'
fi
if ! python3 -c 'import celery, redis' 2>/dev/null; then
  python3 -m pip install 'celery[redis]'
fi
if ! python3 -c 'import scrapy' 2>/dev/null; then
  python3 -m pip install scrapy   # bench/crawl.sh's peer
fi

wrk --version 2>&1 | head -1 || true
python3 -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("aiohttp", "fastapi", "uvicorn", "celery", "scrapy")))'
