# Shared helpers for bench/loadgen.sh, sweep.sh, crawl.sh, crawl_workers.sh, fetch.sh and
# fetch_instructions.sh (sourced, not run):
# start servers on free ports, wait for them, stop them all at exit.
# Expects WORK (a temp dir) and say() from the caller.

declare -a PIDS=()
declare -A PID=() PORT=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

track() { PID[$1]=$2; PIDS+=("$2"); }

stop_all() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# wait_http NAME PATH: until the server answers 200 (30 s at most)
wait_http() {
  local name=$1 path=$2 code=""
  for _ in $(seq 300); do
    kill -0 "${PID[$name]}" 2>/dev/null || { cat "$WORK/$name.err" >&2; echo "$name exited during start" >&2; exit 1; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${PORT[$name]}$path" || true)
    [[ "$code" == 200 ]] && return 0
    sleep 0.1
  done
  echo "$name did not answer 200 on $path within 30 s (last status: $code)" >&2
  exit 1
}

# wait_listening NAME PATTERN: the "... listening on http://IP:PORT" line on stdout gives the port
wait_listening() {
  local name=$1 pattern=$2 line=""
  for _ in $(seq 300); do
    line=$(grep -m1 -o "$pattern http://[0-9.]*:[0-9]*" "$WORK/$name.out" || true)
    if [[ -n "$line" ]]; then PORT[$name]=${line##*:}; return 0; fi
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$WORK/$name.err" >&2
  echo "$name did not print its listening line" >&2
  exit 1
}

start_surge() { # NAME DATABASE_URL
  "$SURGE" serve --bind 127.0.0.1:0 --database-url "$2" --log-level warn >"$WORK/$1.out" 2>"$WORK/$1.err" &
  track "$1" $!
  wait_listening "$1" "surge listening on"
  wait_http "$1" /health
}

start_bare_axum() { # NAME
  "$BARE" 0 >"$WORK/$1.out" 2>"$WORK/$1.err" &
  track "$1" $!
  wait_listening "$1" "bare_axum listening on"
  wait_http "$1" /health
}

start_aiohttp() { # NAME
  PORT[$1]=$(free_port)
  python3 "$PEERS/aiohttp_server.py" "${PORT[$1]}" >"$WORK/$1.out" 2>"$WORK/$1.err" &
  track "$1" $!
  wait_http "$1" /health
}

start_fastapi() { # NAME: one uvicorn worker, access log off (as bench/web.sh)
  PORT[$1]=$(free_port)
  (cd "$PEERS" && exec python3 -m uvicorn fastapi_app:app --host 127.0.0.1 --port "${PORT[$1]}" \
    --log-level warning --no-access-log) >"$WORK/$1.out" 2>"$WORK/$1.err" &
  track "$1" $!
  wait_http "$1" /health
}

# start_nginx_root NAME ROOT DEFAULT_TYPE PROBE_PATH [WORKERS]: a private nginx
# (WORKERS worker processes, default 1) serving the static folder ROOT on a
# free port, access log off, open-file cache on; waits for 200 on PROBE_PATH.
start_nginx_root() {
  local name=$1 root=$2 type=$3 probe=$4 workers=${5:-1}
  PORT[$name]=$(free_port)
  chmod a+rX "$WORK"; chmod -R a+rX "$root"  # nginx workers run as an unprivileged user
  cat >"$WORK/$name-nginx.conf" <<NGINX
worker_processes $workers;
daemon off;
pid $WORK/$name-nginx.pid;
error_log $WORK/$name-nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  open_file_cache max=20000 inactive=600s;
  include /etc/nginx/mime.types;
  server { listen 127.0.0.1:${PORT[$name]} backlog=4096; root $root; default_type $type; }
}
NGINX
  nginx -c "$WORK/$name-nginx.conf" -p "$WORK" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_http "$name" "$probe"
}

start_nginx() { # NAME: one worker process serving a 15-byte static file at /health
  mkdir -p "$WORK/www"
  printf '{"status":"ok"}' >"$WORK/www/health"
  chmod -R a+rX "$WORK"
  start_nginx_root "$1" "$WORK/www" application/json /health
}

# start_nginx_ok NAME: one worker process answering `200 ok\n` from memory at
# every path (no file I/O): bench/fetch.sh's and fetch_instructions.sh's
# endpoint. Its URL is http://127.0.0.1:${PORT[NAME]}/.
start_nginx_ok() {
  local name=$1
  PORT[$name]=$(free_port)
  cat >"$WORK/$name-nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/$name-nginx.pid;
error_log $WORK/$name-nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${PORT[$name]};
    location / { return 200 "ok\n"; }
  }
}
NGINX
  nginx -c "$WORK/$name-nginx.conf" -p "$WORK" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  track "$name" $!
  wait_http "$name" /
}

compiler_running() { pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; }

# machine_state: "load average X, cargo/rustc running|quiet"
machine_state() {
  local state=quiet
  compiler_running && state="cargo/rustc running"
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $state"
}
