#!/usr/bin/env bash
# Where each proxy spends its CPU per request: perf (cpu-clock, call graphs) on
# statuswatch, a bare pingora proxy and nginx under the same keep-alive load as
# bench/run.sh (one proxy thread pinned to CPU 0; wrk and an nginx upstream on
# CPU 1; 64 connections; 1,000 Zipf tenants), one after the other in one run.
#
#   bash bench/profile.sh [TARGET...]     # default: statuswatch bare nginx (also: lean)
#
# Writes bench/out/profile-<stamp>/<target>.txt: CPU-µs/request for the run,
# then perf's flat profile (self time by symbol, entries ≥ 0.5 %), the same
# grouped by component (bench/profile_groups.py) and by DSO. Needs linux-perf (installed here from Debian if missing).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOG_TAG=profile
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(statuswatch bare nginx)
MODE=${PROFILE_MODE:-cpu}  # cpu: perf record; syscalls: perf trace -s (syscall counts and times per thread); none: CPU-µs/request only;
# instructions: user-space instructions per request under valgrind (callgrind), which unlike CPU time
# does not move with the machine's noise: the way to compare small changes here (kernel work not included)
DUR=${PROFILE_DURATION:-10}; TENANTS=${PROFILE_TENANTS:-1000}; CONNS=${PROFILE_CONNS:-64}
PROXY_CPU=0; LOAD_CPU=1
apt_install linux-perf wrk nginx procps python3 curl
WRAP=()
if [ "$MODE" = instructions ]; then
  apt_install valgrind
  # Counted only between the toggles around the measured wrk run.
  WRAP=(valgrind --tool=callgrind --instr-atstart=no --vgdb=yes --callgrind-out-file=/tmp/swprofile-cg.%p.out)
fi
ensure_cargo
PERF="$(command -v perf || ls /usr/bin/perf_* 2>/dev/null | head -1)"
OUT="$HERE/out/profile-$(date -u +%Y%m%dT%H%M%SZ)"; mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/swprofile.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --locked --bins --example bare_proxy --example lean_proxy >"$OUT/build.log" 2>&1)
SW="$ROOT/target/release/statuswatch"; BARE="$ROOT/target/release/examples/bare_proxy"; LEAN="$ROOT/target/release/examples/lean_proxy"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

UP_PORT="$(free_port)"
mkdir -p "$WORK/up"
cat >"$WORK/up.conf" <<NGX
worker_processes 1; pid $WORK/up.pid; error_log $WORK/up-error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up; uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP_PORT backlog=4096; default_type application/json;
    location / { return 200 '{"status":200,"service":"rev23-bench","pad":"$(head -c 900 /dev/zero | tr '\0' x)"}'; } } }
NGX
taskset -c "$LOAD_CPU" "$NGINX" -p "$WORK" -c "$WORK/up.conf" -g 'daemon off; master_process off;' >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$UP_PORT"

start() {  # NAME PORT -> prints the pid to profile
  local name="$1" port="$2"
  case "$name" in
    statuswatch)
      printf '[proxy]\nlisten = "127.0.0.1:%s"\nupstream = "127.0.0.1:%s"\nthreads = 1\ngrace_period = "1s"\nshutdown_timeout = "1s"\n[admin]\nlisten = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' \
        "$port" "$UP_PORT" "$(free_port)" >"$WORK/sw.toml"
      taskset -c "$PROXY_CPU" "${WRAP[@]}" "$SW" --config "$WORK/sw.toml" >"$OUT/$name.log" 2>&1 & ;;
    bare)
      taskset -c "$PROXY_CPU" "${WRAP[@]}" "$BARE" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$UP_PORT" --threads 1 >"$OUT/$name.log" 2>&1 & ;;
    lean)  # examples/lean_proxy.rs: forwarding on pingora-core sessions, nothing else
      taskset -c "$PROXY_CPU" "${WRAP[@]}" "$LEAN" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$UP_PORT" --threads 1 >"$OUT/$name.log" 2>&1 & ;;
    nginx)
      mkdir -p "$WORK/px"
      cat >"$WORK/px.conf" <<NGX
worker_processes 1; pid $WORK/px.pid; error_log $WORK/px-error.log warn; master_process off;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/px; proxy_temp_path $WORK/px; fastcgi_temp_path $WORK/px; uwsgi_temp_path $WORK/px; scgi_temp_path $WORK/px;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; }
  server { listen 127.0.0.1:$port backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
      taskset -c "$PROXY_CPU" "${WRAP[@]}" "$NGINX" -p "$WORK/px" -c "$WORK/px.conf" -g 'daemon off;' >"$OUT/$name.log" 2>&1 & ;;
    *) echo "unknown target $name" >&2; return 1 ;;
  esac
  echo $!
}

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
uticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12}'; }  # user time only

for name in "${TARGETS[@]}"; do
  port="$(free_port)"
  pid="$(start "$name" "$port")"; PIDS+=("$pid")
  if [ "$MODE" = instructions ]; then
    # valgrind takes a while to load a large binary; wait_port alone gives up after 10 s.
    for _ in $(seq 60); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 1; done
  fi
  wait_port "$port"
  # Register every tenant once, then warm up.
  SWB_TENANTS="$TENANTS" SWB_MODE=prime taskset -c "$LOAD_CPU" wrk -t1 -c1 -d2s -s "$HERE/traffic.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  SWB_TENANTS="$TENANTS" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s "$HERE/traffic.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  if [ "$MODE" = instructions ]; then
    # Few connections, so the requests still in flight when wrk stops (done
    # by the proxy but not counted by wrk) are a small share of the total.
    callgrind_control -i on "$pid" >/dev/null 2>&1
    SWB_TENANTS="$TENANTS" taskset -c "$LOAD_CPU" wrk -t1 -c8 -d"${DUR}s" -s "$HERE/traffic.lua" "http://127.0.0.1:$port/" >"$WORK/wrk.txt" 2>&1 || true
    callgrind_control -i off "$pid" >/dev/null 2>&1
    rm -f /tmp/swprofile-cg."$pid".out*
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    reqs="$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")"
    ir="$(awk '/^totals:/ {t += $2} END {print t + 0}' /tmp/swprofile-cg."$pid".out* 2>/dev/null || echo 0)"
    echo "# $name: $reqs requests in ${DUR}s under valgrind, $(awk -v i="${ir:-0}" -v r="$reqs" 'BEGIN{printf "%.0f", i / r}') user-space instructions/request" >"$OUT/$name.txt"
    log "$(head -1 "$OUT/$name.txt")"
    if [ "${PROFILE_KEEP:-0}" = 1 ]; then cp /tmp/swprofile-cg."$pid".out* "$OUT/"; fi
    rm -f /tmp/swprofile-cg."$pid".out*
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    rm -f /tmp/swprofile-cg."$pid".out*
    continue
  fi
  t0="$(ticks "$pid")"; u0="$(uticks "$pid")"
  SWB_TENANTS="$TENANTS" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$HERE/traffic.lua" "http://127.0.0.1:$port/" >"$WORK/wrk.txt" 2>&1 &
  wrk_pid=$!
  sleep 1
  if [ "$MODE" = none ]; then
    sleep $((DUR - 2))
  elif [ "$MODE" = syscalls ]; then
    "$PERF" trace -s -p "$pid" -o "$WORK/trace.txt" -- sleep $((DUR - 2)) >/dev/null 2>&1 || true
    "$PERF" stat -e context-switches,cpu-migrations -p "$pid" -o "$WORK/stat.txt" -- sleep 1 >/dev/null 2>&1 || true
  else
    "$PERF" record -F 999 -e cpu-clock -g -p "$pid" -o "$WORK/perf.data" -- sleep $((DUR - 2)) >/dev/null 2>&1 || true
  fi
  wait "$wrk_pid" || true
  t1="$(ticks "$pid")"; u1="$(uticks "$pid")"
  reqs="$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")"
  hz="$(getconf CLK_TCK)"
  if [ "$MODE" = none ]; then
    echo "# $name: $reqs requests in ${DUR}s, $(awk -v t=$((t1 - t0)) -v u=$((u1 - u0)) -v hz="$hz" -v r="$reqs" 'BEGIN{printf "%.2f CPU-us/request (user %.2f)", t / hz * 1e6 / r, u / hz * 1e6 / r}')" >"$OUT/$name.txt"
    log "$(head -1 "$OUT/$name.txt")"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    continue
  elif [ "$MODE" = syscalls ]; then
    { echo "# $name: $reqs requests in ${DUR}s (traced for $((DUR - 2))s; the rate is lower under tracing)"
      cat "$WORK/trace.txt" "$WORK/stat.txt"; } >"$OUT/$name.txt"
    log "$(head -1 "$OUT/$name.txt")"
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    continue
  fi
  {
    echo "# $name: $reqs requests in ${DUR}s, $(awk -v t=$((t1 - t0)) -v hz="$hz" -v r="$reqs" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}') CPU-us/request"
    echo "## self time by symbol (>= 0.5 %)"
    "$PERF" report -i "$WORK/perf.data" --no-children --stdio --sort symbol --percent-limit 0.5 -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
    echo "## self time by component"
    "$PERF" report -i "$WORK/perf.data" --no-children --stdio --sort dso,symbol --percent-limit 0 -g none 2>/dev/null \
      | python3 "$HERE/profile_groups.py"
    echo "## self time by DSO"
    "$PERF" report -i "$WORK/perf.data" --no-children --stdio --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
  } >"$OUT/$name.txt"
  log "$(head -1 "$OUT/$name.txt")"
  # PROFILE_KEEP=1 keeps perf.data for `perf report -i` (call graphs, lower limits).
  if [ "${PROFILE_KEEP:-0}" = 1 ]; then cp "$WORK/perf.data" "$OUT/$name.perf.data"; fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
done
log "profiles in $OUT"
