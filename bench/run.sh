#!/usr/bin/env bash
# statuswatch side-by-side benchmark (issue #8).
#
#   bash bench/run.sh            full run: 3 measured runs per cell, every tenant count,
#                                latency at 25/50/75 % of the slowest peer; writes bench/RESULTS.md
#   bash bench/run.sh --smoke    a few seconds per target, 1 run, fewer tenant counts (< ~3 min);
#                                exits 0 when every target served traffic (CI)
#
# Targets: direct (load generator -> upstream), statuswatch (default config, threads=1)
# with 1/100/1,000/10,000 Zipf-distributed tenants, bare pingora (examples/bare_proxy.rs,
# run twice as an A/A noise check), nginx proxy_pass with upstream keepalive, nginx-lua
# (the same nginx plus an OpenResty-style per-tenant tally: Debian's libnginx-mod-http-lua,
# lua_shared_dict counters keyed by "tenant status", incr in log_by_lua_block; skipped when
# the module cannot be installed), HAProxy http mode with keepalive. Every proxy gets
# 1 worker/thread and no access log.
# Layout: the proxy under test is pinned to CPU 0; the load generator and the upstream
# (nginx, fixed ~1 KB JSON, status chosen by path /status/NNN) share CPU 1.
# Primary efficiency figure: proxy CPU time per request = utime+stime delta of the proxy's
# processes (/proc/PID/stat) over the measured run / requests completed.
#
# Env knobs: BENCH_RUNS, BENCH_DURATION (s), BENCH_WARMUP (s), BENCH_CONNS, BENCH_NO_OHA=1,
# BENCH_RESULTS (where to write the markdown; smoke writes only under bench/out/).
set -euo pipefail
ulimit -n 65536 2>/dev/null || true

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOG_TAG=bench
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # log, as_root, apt_install, ensure_cargo, free_port, wait_port
SMOKE=0
for a in "$@"; do
  case "$a" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n 2,22p "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

if [ "$SMOKE" = 1 ]; then
  RUNS=${BENCH_RUNS:-1}; DUR=${BENCH_DURATION:-2}; WARM=${BENCH_WARMUP:-1}; LAT_DUR=${BENCH_LAT_DURATION:-3}
  TENANT_COUNTS=(1 10000); LAT_FRACTIONS=(50); SCRAPE_DUR=4
else
  RUNS=${BENCH_RUNS:-3}; DUR=${BENCH_DURATION:-8}; WARM=${BENCH_WARMUP:-2}; LAT_DUR=${BENCH_LAT_DURATION:-10}
  TENANT_COUNTS=(1 100 1000 10000); LAT_FRACTIONS=(25 50 75); SCRAPE_DUR=15
fi
CONNS=${BENCH_CONNS:-64}
LAT_CONNS=${BENCH_LAT_CONNS:-32}
MAX_TENANTS=10000   # statuswatch default tenant.max_tenants

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
SUFFIX=""; [ "$SMOKE" = 1 ] && SUFFIX="-smoke"
OUT="$HERE/out/$STAMP$SUFFIX"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/swbench.XXXXXX)"
RESULTS_TSV="$OUT/runs.tsv"
LAT_TSV="$OUT/latency.tsv"
INFO_TSV="$OUT/info.tsv"
printf 'target\tworkload\trun\trps\trequests\terrors\tstatus_non2xx\tcpu_us_per_req\tcpu_util\tp50_us\tp99_us\tp999_us\n' >"$RESULTS_TSV"
printf 'target\trate\ttool\tp50_us\tp99_us\tp999_us\trequests\terrors\tscrape\n' >"$LAT_TSV"
printf 'key\tvalue\n' >"$INFO_TSV"
info() { printf '%s\t%s\n' "$1" "$2" >>"$INFO_TSV"; }

# ---------------------------------------------------------------- processes
declare -a STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${STARTED[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: TERM, wait up to 3 s, then KILL (the process was started by us)
stop() {
  local p="$1" _
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# ---------------------------------------------------------------- tools
apt_install wrk nginx haproxy util-linux procps python3 curl
# nginx-lua peer: optional, the run goes on without it
apt_install libnginx-mod-http-lua || log "could not install libnginx-mod-http-lua; target nginx-lua will be skipped"
ensure_cargo || exit 1

OHA=""
if [ "${BENCH_NO_OHA:-0}" != 1 ]; then
  if command -v oha >/dev/null; then
    OHA="$(command -v oha)"
  elif [ "$SMOKE" = 0 ]; then
    log "installing oha (cargo install oha --locked, at most 15 min)"
    if timeout 900 cargo install oha --locked >"$OUT/oha-install.log" 2>&1; then
      OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
    else
      log "oha install failed or timed out; fixed-rate runs use loadgen (examples/loadgen.rs)"
    fi
  fi
fi
if [ -n "$OHA" ]; then
  info latency_tool "oha $("$OHA" --version | awk '{print $2}') -q RATE --latency-correction -c $LAT_CONNS"
else
  info latency_tool "loadgen (examples/loadgen.rs): open loop, latency from intended send time (coordinated-omission corrected), $LAT_CONNS connections, 1 s warm-up"
fi

log "building release binaries"
(cd "$ROOT" && cargo build --release --locked --bins --example bare_proxy --example loadgen >"$OUT/build.log" 2>&1) \
  || { tail -n 30 "$OUT/build.log" >&2; exit 1; }
SW="$ROOT/target/release/statuswatch"
BARE="$ROOT/target/release/examples/bare_proxy"
LOADGEN="$ROOT/target/release/examples/loadgen"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
LUA="$HERE/traffic.lua"
NGX_LUA_LOAD=""   # load_module lines for the nginx-lua target; empty = module missing, target skipped
for d in /usr/lib/nginx/modules /usr/share/nginx/modules; do
  if [ -f "$d/ndk_http_module.so" ] && [ -f "$d/ngx_http_lua_module.so" ]; then
    NGX_LUA_LOAD="load_module $d/ndk_http_module.so; load_module $d/ngx_http_lua_module.so;"
    break
  fi
done
TCK="$(getconf CLK_TCK)"

NCPU="$(nproc)"
if [ "$NCPU" -ge 2 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi
info layout "proxy on CPU $PROXY_CPU; load generator + upstream on CPU $LOAD_CPU (taskset)"
info nproc "$NCPU"
info cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
info kernel "$(uname -sr)"
info os "$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
info versions "$("$NGINX" -v 2>&1 | sed 's/.*: //'), HAProxy $("$HAPROXY" -v | head -1 | awk '{print $3}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk",$2}'), $(rustc --version | awk '{print "rustc",$2}'), pingora 0.9.1, statuswatch $("$SW" --version | awk '{print $2}')"
info settings "runs=$RUNS duration=${DUR}s warmup=${WARM}s connections=$CONNS smoke=$SMOKE"
info loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
if pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; then
  info noise "cargo/rustc processes were running when the measurements started"
  log "warning: cargo/rustc running; numbers will be noisy"
fi

# ---------------------------------------------------------------- upstream
UP_PORT="$(free_port)"
BODY_PAD="$(head -c 980 /dev/zero | tr '\0' 'x')"
{
  echo "worker_processes 1; pid $WORK/up.pid; error_log $WORK/up-error.log warn;"
  echo "events { worker_connections 8192; }"
  echo "http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;"
  echo "  client_body_temp_path $WORK/up-body; proxy_temp_path $WORK/up-proxy; fastcgi_temp_path $WORK/up-fcgi; uwsgi_temp_path $WORK/up-uwsgi; scgi_temp_path $WORK/up-scgi;"
  echo "  server { listen 127.0.0.1:$UP_PORT backlog=4096; default_type application/json;"
  for c in 200 201 400 401 402 403 404 409 429 451 500 503; do
    echo "    location = /status/$c { return $c '{\"status\":$c,\"service\":\"rev23-bench\",\"pad\":\"$BODY_PAD\"}'; }"
  done
  echo "    location / { return 200 '{\"status\":200,\"service\":\"rev23-bench\",\"pad\":\"$BODY_PAD\"}'; } } }"
} >"$WORK/upstream.conf"
taskset -c "$LOAD_CPU" "$NGINX" -e "$WORK/up-error.log" -p "$WORK" -c "$WORK/upstream.conf" -g 'daemon off; master_process off;' \
  >"$OUT/upstream.log" 2>&1 &
UP_PID=$!; STARTED+=("$UP_PID")
wait_port "$UP_PORT"
info upstream "nginx, 1 worker, ~$(curl -s "http://127.0.0.1:$UP_PORT/status/200" | wc -c || true)-byte JSON, keepalive"

# ---------------------------------------------------------------- targets
# nginx_proxy_conf nginx|nginx-lua PORT -> the proxy's nginx.conf on stdout. nginx-lua is the
# same proxy plus a per-tenant tally as OpenResty users write it: a shared dict of counters
# keyed by "tenant status", incremented after each response; GET /__tally reports it.
nginx_proxy_conf() {
  local name="$1" port="$2" load="" dict="" tally="" tally_loc=""
  if [ "$name" = nginx-lua ]; then
    load="$NGX_LUA_LOAD"
    dict="lua_shared_dict tally 64m;"
    tally='log_by_lua_block { ngx.shared.tally:incr((ngx.var.http_x_tenant_name or "-") .. " " .. ngx.var.status, 1, 0) }'
    tally_loc='location = /__tally { content_by_lua_block {
      local d = ngx.shared.tally
      local keys = d:get_keys(0)
      local n = 0
      for _, k in ipairs(keys) do n = n + (d:get(k) or 0) end
      ngx.say("keys=", #keys, " requests=", n)
    } }'
  fi
  cat <<NGX
$load
worker_processes 1; pid $WORK/px.pid; error_log $WORK/px-error.log warn;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/px/body; proxy_temp_path $WORK/px/proxy; fastcgi_temp_path $WORK/px/fcgi;
  uwsgi_temp_path $WORK/px/uwsgi; scgi_temp_path $WORK/px/scgi;
  $dict
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; $tally }
    $tally_loc
  }
}
NGX
}

# The nginx-lua target runs only if its config loads (module present and working).
if [ -n "$NGX_LUA_LOAD" ]; then
  mkdir -p "$WORK/px"
  nginx_proxy_conf nginx-lua "$(free_port)" >"$WORK/px-lua-check.conf"
  if "$NGINX" -t -q -e "$WORK/px-error.log" -p "$WORK/px" -c "$WORK/px-lua-check.conf" >"$OUT/nginx-lua-check.log" 2>&1; then
    info nginx_lua "libnginx-mod-http-lua $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'), lua_shared_dict tally 64m, incr in log_by_lua_block"
  else
    log "nginx with the Lua module does not load its config (see $OUT/nginx-lua-check.log); target nginx-lua skipped"
    NGX_LUA_LOAD=""
  fi
fi
[ -n "$NGX_LUA_LOAD" ] || info nginx_lua "skipped: libnginx-mod-http-lua not available"

# start_target NAME -> sets T_PID (pids to account CPU for: T_PIDS), T_PORT, T_ADMIN
T_PID=""; T_PIDS=""; T_PORT=""; T_ADMIN=""
start_target() {
  local name="$1"
  T_PORT="$(free_port)"; T_ADMIN=""
  case "$name" in
    direct)
      T_PORT="$UP_PORT"; T_PID=""; T_PIDS="" ; return 0 ;;
    statuswatch*)
      T_ADMIN="$(free_port)"
      cat >"$WORK/sw.toml" <<TOML
[proxy]
listen = "127.0.0.1:$T_PORT"
upstream = "127.0.0.1:$UP_PORT"
threads = 1
grace_period = "1s"
shutdown_timeout = "1s"
[admin]
listen = "127.0.0.1:$T_ADMIN"
[log]
level = "warn"
TOML
      taskset -c "$PROXY_CPU" "$SW" --config "$WORK/sw.toml" >"$OUT/$name.log" 2>&1 &
      T_PID=$! ;;
    bare*)
      taskset -c "$PROXY_CPU" "$BARE" --listen "127.0.0.1:$T_PORT" --upstream "127.0.0.1:$UP_PORT" --threads 1 \
        >"$OUT/$name.log" 2>&1 &
      T_PID=$! ;;
    nginx|nginx-lua)
      nginx_proxy_conf "$name" "$T_PORT" >"$WORK/px.conf"
      mkdir -p "$WORK/px"
      taskset -c "$PROXY_CPU" "$NGINX" -e "$WORK/px-error.log" -p "$WORK/px" -c "$WORK/px.conf" -g 'daemon off;' \
        >"$OUT/$name.log" 2>&1 &
      T_PID=$! ;;
    haproxy)
      cat >"$WORK/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$T_PORT
  default_backend be
backend be
  server up 127.0.0.1:$UP_PORT
HAP
      taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$OUT/$name.log" 2>&1 &
      T_PID=$! ;;
  esac
  STARTED+=("$T_PID")
  wait_port "$T_PORT" || { cat "$OUT/$name.log" >&2; return 1; }
  T_PIDS="$T_PID $(pgrep -P "$T_PID" | tr '\n' ' ' || true)"
}

cpu_ticks() {  # sum of utime+stime over T_PIDS
  local t=0 p v
  for p in $T_PIDS; do
    v="$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')"
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

mem_kib() {  # KEY (VmRSS / VmHWM) summed over T_PIDS
  local t=0 p v
  for p in $T_PIDS; do
    v="$(awk -v k="$1:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null)"
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# wrk_run TARGET WORKLOAD RUN DURATION TENANTS MODE CLOSE [extra wrk args] -> appends a row unless RUN=warmup
wrk_run() {
  local target="$1" workload="$2" run="$3" dur="$4" tenants="$5" mode="$6" close="$7"
  local c0 c1 out line reqs rps errs st p50 p99 p999 dus cpu util
  c0="$(cpu_ticks)"
  out="$(SWB_TENANTS="$tenants" SWB_MODE="$mode" SWB_CLOSE="$close" \
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${dur}s" --timeout 5s -s "$LUA" "http://127.0.0.1:$T_PORT/" 2>&1)" || true
  c1="$(cpu_ticks)"
  echo "$out" >>"$OUT/wrk-$target-$workload.txt"
  [ "$run" = warmup ] && return 0
  line="$(echo "$out" | grep '^SWBENCH' || true)"
  if [ -z "$line" ]; then log "$target/$workload: wrk printed no summary"; echo "$out" >&2; return 0; fi
  kv() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
  reqs="$(kv requests)"; dus="$(kv duration_us)"; errs="$(kv errors)"; st="$(kv status_errors)"
  p50="$(kv p50)"; p99="$(kv p99)"; p999="$(kv p999)"
  rps="$(awk -v r="$reqs" -v d="$dus" 'BEGIN{printf "%.0f", r / (d / 1e6)}')"
  if [ -n "$T_PIDS" ] && [ "$reqs" -gt 0 ]; then
    cpu="$(awk -v t=$((c1 - c0)) -v hz="$TCK" -v r="$reqs" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}')"
    util="$(awk -v t=$((c1 - c0)) -v hz="$TCK" -v d="$dus" 'BEGIN{printf "%.2f", t / hz / (d / 1e6)}')"
  else cpu=""; util=""; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$workload" "$run" "$rps" "$reqs" "$errs" "$st" \
    "$cpu" "$util" "$p50" "$p99" "$p999" >>"$RESULTS_TSV"
  log "$target/$workload run $run: ${rps} req/s, ${cpu:-n/a} CPU-us/req (proxy util ${util:-n/a}), p99 ${p99} us, errors $errs"
}

# workload NAME -> MODE CLOSE
workload() {
  case "$1" in
    keepalive) echo "ok 0" ;;
    close) echo "ok 1" ;;
    mixed) echo "mixed 0" ;;
  esac
}

measure() {  # TARGET TENANTS WORKLOAD...
  local target="$1" tenants="$2"; shift 2
  local w r mode close
  for w in "$@"; do
    read -r mode close <<<"$(workload "$w")"
    wrk_run "$target" "$w" warmup "$WARM" "$tenants" "$mode" "$close"
    for r in $(seq "$RUNS"); do
      wrk_run "$target" "$w" "$r" "$DUR" "$tenants" "$mode" "$close"
    done
  done
}

prime_tenants() {  # register every tenant 1..N once, then check the gauge
  local n="$1" tracked
  SWB_TENANTS="$n" SWB_MODE=prime taskset -c "$LOAD_CPU" wrk -t1 -c1 -d"$(( n / 2000 + 2 ))s" -s "$LUA" \
    "http://127.0.0.1:$T_PORT/" >"$OUT/prime-$n.txt" 2>&1 || true
  tracked="$(curl -s "http://127.0.0.1:$T_ADMIN/metrics" | awk '$1 == "statuswatch_tenants_tracked" {print $2}' || true)"
  log "statuswatch tracks ${tracked:-?} tenants after priming $n"
  echo "${tracked:-0}"
}

record_mem() {  # TARGET PHASE
  info "mem/$1/$2" "$(mem_kib VmRSS) $(mem_kib VmHWM)"
}

PEER_TENANTS=$MAX_TENANTS   # peers get the same Zipf X-Tenant-Name header as statuswatch@10k

# ================================================================ pass 1: saturation
log "pass 1: saturation (runs=$RUNS x ${DUR}s, warm-up ${WARM}s, $CONNS connections)"
TARGETS=(direct)
for n in "${TENANT_COUNTS[@]}"; do TARGETS+=("statuswatch-$n"); done
TARGETS+=(bare-A bare-B nginx)
[ -n "$NGX_LUA_LOAD" ] && TARGETS+=(nginx-lua)
TARGETS+=(haproxy)
for target in "${TARGETS[@]}"; do
  start_target "$target"
  sleep 0.3
  [ -n "$T_PIDS" ] && record_mem "$target" idle
  case "$target" in
    statuswatch-*)
      n="${target#statuswatch-}"
      if [ "$n" = "$MAX_TENANTS" ]; then
        info "tenants_tracked/$target" "$(prime_tenants "$n")"
        record_mem "$target" primed
        measure "$target" "$n" keepalive close mixed
      else
        measure "$target" "$n" keepalive
      fi ;;
    bare-B) measure "$target" "$PEER_TENANTS" keepalive ;;
    *) measure "$target" "$PEER_TENANTS" keepalive close mixed ;;
  esac
  if [ -n "$T_PIDS" ]; then
    record_mem "$target" loaded
    [ -n "$T_ADMIN" ] && info "tenants_tracked_end/$target" \
      "$(curl -s "http://127.0.0.1:$T_ADMIN/metrics" | awk '$1 == "statuswatch_tenants_tracked" {print $2}' || true)"
    if [ "$target" = nginx-lua ]; then
      tally="$(curl -s "http://127.0.0.1:$T_PORT/__tally" || true)"
      log "nginx-lua tally dict after its runs: ${tally:-no answer}"
      info "tally/nginx-lua" "${tally:-none}"
    fi
    stop "$T_PID"
  fi
done

# ================================================================ pass 2: fixed-rate latency
SLOWEST="$(python3 - "$RESULTS_TSV" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["workload"] == "keepalive"]
med = {}
for t in {r["target"] for r in rows}:
    if t == "direct":
        continue
    v = [float(r["rps"]) for r in rows if r["target"] == t and float(r["rps"]) > 0]
    if v:
        med[t] = statistics.median(v)
print(int(min(med.values())) if med else 0)
PY
)"
info slowest_saturation_rps "$SLOWEST"
log "pass 2: fixed-rate latency at ${LAT_FRACTIONS[*]} % of $SLOWEST req/s (slowest peer)"

lat_run() {  # TARGET RATE SCRAPE(0/1)
  local target="$1" rate="$2" scrape="$3" out p50 p99 p999 reqs errs tool spid=""
  if [ "$scrape" = 1 ]; then
    (
      while :; do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$T_ADMIN/metrics" >>"$OUT/scrape-times.txt"
        sleep 1
      done
    ) &
    spid=$!; STARTED+=("$spid")
  fi
  if [ -n "$OHA" ]; then
    tool=oha
    out="$(taskset -c "$LOAD_CPU" "$OHA" -z "${LAT_DUR}s" -q "$rate" --latency-correction -c "$LAT_CONNS" --no-tui \
      --output-format json -H "X-Tenant-Name: t1" "http://127.0.0.1:$T_PORT/status/200" 2>"$OUT/oha-err.txt")" || true
    echo "$out" >"$OUT/oha-$target-$rate-$scrape.json"
    read -r p50 p99 p999 reqs errs <<<"$(echo "$out" | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except Exception:
    print("0 0 0 0 1"); sys.exit()
p = d.get("latencyPercentiles", {})
us = lambda k: int(round((p.get(k) or 0) * 1e6))
dist = d.get("statusCodeDistribution", {})
ok = sum(dist.values())
errs = sum(d.get("errorDistribution", {}).values())
print(us("p50"), us("p99"), us("p99.9"), ok, errs)')"
  else
    tool=loadgen
    local lg_out="$OUT/loadgen-$target-$rate-$scrape.txt"
    out="$(taskset -c "$LOAD_CPU" "$LOADGEN" --url "http://127.0.0.1:$T_PORT/status/200" --rate "$rate" \
      --connections "$LAT_CONNS" --duration "$LAT_DUR" --warmup 1 -H "X-Tenant-Name: t1" 2>"$lg_out")" || true
    echo "$out" >>"$lg_out"
    local line; line="$(echo "$out" | grep '^SWBENCH' || echo 'SWBENCH requests=0 errors=1 unsent=0 p50=0 p99=0 p999=0')"
    kv() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
    p50="$(kv p50)"; p99="$(kv p99)"; p999="$(kv p999)"; reqs="$(kv requests)"
    # due requests never sent (the target fell seconds behind the rate) count as errors too
    errs=$(( $(kv errors) + $(kv unsent) ))
  fi
  if [ -n "$spid" ]; then kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$rate" "$tool" "$p50" "$p99" "$p999" "$reqs" "$errs" "$scrape" >>"$LAT_TSV"
  log "$target @ $rate req/s ($tool, scrape=$scrape): p50 $p50 us, p99 $p99 us, p99.9 $p999 us, $reqs ok, $errs errors"
}

if [ "$SLOWEST" -gt 0 ]; then
  for target in direct "statuswatch-$MAX_TENANTS" bare-A nginx haproxy; do
    start_target "$target"
    if [ "$target" = "statuswatch-$MAX_TENANTS" ]; then prime_tenants "$MAX_TENANTS" >/dev/null; fi
    # short warm-up at the middle rate
    SWB_TENANTS=1 SWB_MODE=ok taskset -c "$LOAD_CPU" wrk -t1 -c"$LAT_CONNS" -d1s -s "$LUA" "http://127.0.0.1:$T_PORT/" >/dev/null 2>&1 || true
    for f in "${LAT_FRACTIONS[@]}"; do
      lat_run "$target" $(( SLOWEST * f / 100 )) 0
    done
    if [ "$target" = "statuswatch-$MAX_TENANTS" ]; then
      : >"$OUT/scrape-times.txt"
      LAT_SAVE=$LAT_DUR; LAT_DUR=$SCRAPE_DUR
      lat_run "$target" $(( SLOWEST * 50 / 100 )) 1
      LAT_DUR=$LAT_SAVE
      info scrape "$(awk '{n++; s+=$1; if ($1>m) m=$1; b=$2} END {if (n) printf "%d scrapes, mean %.2f ms, max %.2f ms, %d bytes", n, s/n*1000, m*1000, b}' "$OUT/scrape-times.txt")"
    fi
    if [ -n "$T_PIDS" ]; then stop "$T_PID"; fi
  done
fi

# ================================================================ pass 3: scrape under saturation
# Issue 14: how long a scrape of /metrics takes while the proxy saturates its core, and
# whether that is render work or waiting for the core. The admin thread shares CPU 0 with the
# proxy's worker (taskset pins the whole process).
SCRAPE_TENANTS=(1000 10000)
SCRAPE_TSV="$OUT/scrape.tsv"
printf 'tenants\tscrape\twall_ms\tbytes\tadmin_cpu_ms\tadmin_wait_ms\n' >"$SCRAPE_TSV"

schedstat() {  # TID -> "run_ns wait_ns" of the proxy's thread TID (/proc/PID/task/TID/schedstat)
  local v
  v="$(cat "/proc/$T_PID/task/$1/schedstat" 2>/dev/null || true)"
  echo "${v:-0 0 0}" | awk '{print $1, $2}'
}

# scrape_saturated TENANTS: a fresh statuswatch with TENANTS primed, saturated by wrk (mixed codes,
# keep-alive, $CONNS connections) while curl, on the load generator's CPU, scrapes /metrics once a
# second. Per scrape (scrape.tsv): curl's time_total, bytes, and the admin thread's CPU time and
# run-queue wait from its schedstat (ns, exact; /proc stat ticks are 10 ms). Wall time minus both
# is time the thread slept, i.e. waiting on the socket for curl. A scrape still running when wrk
# ends is dropped, so every row was taken under load. info gets the run's req/s, the proxy's CPU
# utilisation (1.00 = its core saturated) and the series in a body taken right after.
scrape_saturated() {
  local n="$1" t tid="" wpid out b0 b1 a0 a1 line c0 c1 k=0
  start_target "statuswatch-scrape-$n"
  prime_tenants "$n" >/dev/null
  for t in /proc/"$T_PID"/task/*; do
    # thread names are cut to 15 characters: statuswatch-admin -> statuswatch-adm
    if [ "$(cat "$t/comm" 2>/dev/null)" = statuswatch-adm ]; then tid="${t##*/}"; fi
  done
  [ -n "$tid" ] || log "statuswatch-scrape-$n: no statuswatch-admin thread; admin CPU not measured"
  c0="$(cpu_ticks)"
  SWB_TENANTS="$n" SWB_MODE=mixed taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$(( SCRAPE_DUR + 1 ))s" --timeout 5s \
    -s "$LUA" "http://127.0.0.1:$T_PORT/" >"$OUT/wrk-scrape-$n.txt" 2>&1 &
  wpid=$!; STARTED+=("$wpid")
  sleep 1   # wrk saturates the proxy before the first scrape
  while kill -0 "$wpid" 2>/dev/null; do
    read -r b0 b1 <<<"$(schedstat "$tid")"
    # to /dev/null: curl writing 10 MB to a file on the busy load CPU doubled the wall time
    out="$(taskset -c "$LOAD_CPU" curl -s -o /dev/null -w '%{time_total} %{size_download}' \
      "http://127.0.0.1:$T_ADMIN/metrics" || true)"
    read -r a0 a1 <<<"$(schedstat "$tid")"
    kill -0 "$wpid" 2>/dev/null || break
    if [ -n "$out" ]; then
      k=$((k + 1))
      echo "$out $b0 $b1 $a0 $a1" | awk -v OFS='\t' -v n="$n" -v k="$k" -v t="$tid" \
        '{c = t == "" ? "" : sprintf("%.2f", ($5 - $3) / 1e6); w = t == "" ? "" : sprintf("%.2f", ($6 - $4) / 1e6);
          print n, k, sprintf("%.2f", $1 * 1000), $2, c, w}' >>"$SCRAPE_TSV"
    fi
    sleep 1
  done
  wait "$wpid" 2>/dev/null || true
  c1="$(cpu_ticks)"
  curl -s -o "$WORK/scrape-body.txt" "http://127.0.0.1:$T_ADMIN/metrics" || true   # for the series count
  line="$(grep '^SWBENCH' "$OUT/wrk-scrape-$n.txt" || true)"
  info "scrape_saturated/$n" "$(echo "$line" | tr ' ' '\n' | awk -F= -v t=$((c1 - c0)) -v hz="$TCK" \
    '$1 == "requests" {r = $2} $1 == "duration_us" {d = $2}
     END {printf "rps=%.0f util=%.2f", d ? r / (d / 1e6) : 0, d ? t / hz / (d / 1e6) : 0}') series=$(grep -vc '^#' "$WORK/scrape-body.txt" 2>/dev/null || true)"
  log "statuswatch-scrape-$n: $k scrapes under saturation"
  stop "$T_PID"
}

log "pass 3: /metrics scraped every second while wrk saturates statuswatch (${SCRAPE_TENANTS[*]} tenants)"
for n in "${SCRAPE_TENANTS[@]}"; do scrape_saturated "$n"; done

# Criterion's micro-benchmarks, run here so the report's figures are this run's (report.py
# shows only estimates written after criterion_started, not older ones under target/criterion).
if [ "$SMOKE" = 0 ]; then
  log "pass 4: criterion micro-benchmarks (hot path, render, detector tick, scrape)"
  info criterion_started "$(date +%s)"
  (cd "$ROOT" && cargo bench --locked --bench hot_path --bench scrape -- --noplot >"$OUT/criterion.log" 2>&1) \
    || log "criterion failed: see $OUT/criterion.log"
  # The machine's own floor for the two-thread hot path: the single-thread benchmark on one
  # vCPU while a second process runs the same loop on the other, the two sharing no memory at
  # all. The twin starts first and outlasts the measurement, so they overlap throughout; each
  # has a criterion directory of its own, so the single-thread figure above stays as it is.
  log "pass 4b: the single-thread hot path beside a twin process on the other vCPU (the machine's two-thread floor)"
  HP_BIN="$(cd "$ROOT" && cargo bench --locked --bench hot_path --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
print(next((m["executable"] for m in map(json.loads, sys.stdin)
            if m.get("executable") and m["target"]["name"] == "hot_path" and "bench" in m["target"]["kind"]), ""))')"
  if [ -x "$HP_BIN" ] && [ "$PROXY_CPU" != "$LOAD_CPU" ]; then
    CRITERION_HOME="$WORK/criterion-twin" taskset -c "$LOAD_CPU" "$HP_BIN" --bench 'hot_path/single_thread$' \
      --noplot --measurement-time 120 >/dev/null 2>&1 &
    TWIN=$!
    sleep 2  # past its set-up (0.3 s) and into its loop
    # report.py reads the estimate from $OUT/criterion-beside-twin.
    CRITERION_HOME="$OUT/criterion-beside-twin" taskset -c "$PROXY_CPU" "$HP_BIN" --bench 'hot_path/single_thread$' \
      --noplot >"$OUT/criterion-beside-twin.log" 2>&1 || log "the hot path beside its twin failed: see $OUT/criterion-beside-twin.log"
    kill "$TWIN" 2>/dev/null || true
    wait "$TWIN" 2>/dev/null || true
  else
    log "no hot_path bench binary, or one CPU only: the twin-process control is skipped"
  fi
fi

info loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ================================================================ report
RESULTS_MD="${BENCH_RESULTS:-}"
if [ -z "$RESULTS_MD" ] && [ "$SMOKE" = 0 ]; then RESULTS_MD="$HERE/RESULTS.md"; fi
python3 "$HERE/report.py" "$OUT" "${RESULTS_MD:-$OUT/RESULTS.md}"
if [ -n "$RESULTS_MD" ]; then cp "$RESULTS_MD" "$OUT/RESULTS.md" 2>/dev/null || true; fi
log "raw data in $OUT; report in ${RESULTS_MD:-$OUT/RESULTS.md}"

# every target must have served traffic; nginx-lua's tally must have counted at least the
# requests of its measured runs (it also counts warm-ups)
python3 - "$RESULTS_TSV" "$LAT_TSV" "$INFO_TSV" <<'PY'
import csv, re, sys
bad = []
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for t in sorted({r["target"] for r in rows}):
    if not any(int(r["requests"] or 0) > 0 for r in rows if r["target"] == t):
        bad.append(t)
info = {r["key"]: r["value"] for r in csv.DictReader(open(sys.argv[3]), delimiter="\t")}
if any(r["target"] == "nginx-lua" for r in rows):
    m = re.search(r"requests=(\d+)", info.get("tally/nginx-lua", ""))
    sent = sum(int(r["requests"] or 0) for r in rows if r["target"] == "nginx-lua")
    tallied = int(m.group(1)) if m else 0
    print(f"bench: nginx-lua tally {info.get('tally/nginx-lua')} for {sent} requests in its measured runs")
    if tallied < sent or tallied == 0:
        bad.append(f"nginx-lua tally ({tallied} < {sent})")
lat = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
for r in lat:
    if int(r["requests"] or 0) == 0:
        bad.append(f"latency:{r['target']}@{r['rate']}")
if not rows:
    bad.append("no runs")
if bad:
    print("bench: no traffic served by: " + ", ".join(bad), file=sys.stderr)
    sys.exit(1)
print("bench: every target served traffic")
PY
