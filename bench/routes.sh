#!/usr/bin/env bash
# Proxy CPU per request with the route tally off and on (issue 34), one run each,
# ratios printed. The route tally is resolved once per request in Shared::record;
# this measures what that costs the real proxy end to end.
#
#   bash bench/routes.sh          # ~1 min after the build; BENCH_DURATION (s, default 10), BENCH_CONNS (64)
#
# Targets, one after the other, same traffic (bench/routes.lua: REV23-like requests over 30
# endpoints with random ids and a query string, 100 tenants):
#   off        [route_tally] enabled = false
#   matched    enabled, the 30 endpoints as [[route_tally.routes]] templates (every request matches)
#   unmatched  enabled, no templates: every path normalized ({id} folding) and looked up
#   off-again  the first target again: an A/A check, whose difference is this run's noise
# Then the same three in process (benches/hot_path.rs, route/*: statuswatch's own work for one
# request through the real Shared::record, single thread, criterion), whose differences are
# printed as a share of the proxy's measured CPU per request: the steadier figure on a busy machine.
# Layout as bench/run.sh: statuswatch (threads = 1) pinned to CPU 0; wrk (1 thread) and an nginx
# upstream (1 worker, 200 for every path) on CPU 1. CPU per request = utime+stime delta of the
# proxy process (/proc/PID/stat) over the measured run / requests completed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOG_TAG=routes
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
DUR=${BENCH_DURATION:-10}; WARM=${BENCH_WARMUP:-2}; CONNS=${BENCH_CONNS:-64}
apt_install wrk nginx procps python3
ensure_cargo
(cd "$ROOT" && cargo build --release --locked --bin statuswatch >/dev/null 2>&1) || {
  echo "routes.sh: cargo build failed" >&2; exit 1; }
SW="${CARGO_TARGET_DIR:-$ROOT/target}/release/statuswatch"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
TCK="$(getconf CLK_TCK)"
if [ "$(nproc)" -ge 2 ]; then PROXY_CPU=0; LOAD_CPU=1; else PROXY_CPU=0; LOAD_CPU=0; fi
WORK="$(mktemp -d /tmp/swroutes.XXXXXX)"
STARTED=()
cleanup() { for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

UP_PORT="$(free_port)"
cat >"$WORK/upstream.conf" <<NGX
worker_processes 1; pid $WORK/up.pid; error_log $WORK/up-error.log warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $WORK/b; proxy_temp_path $WORK/p; fastcgi_temp_path $WORK/f; uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  server { listen 127.0.0.1:$UP_PORT backlog=4096; default_type application/json;
    location / { return 200 '{"status":200,"service":"rev23-bench"}'; } } }
NGX
taskset -c "$LOAD_CPU" "$NGINX" -e "$WORK/up-error.log" -p "$WORK" -c "$WORK/upstream.conf" \
  -g 'daemon off; master_process off;' >"$WORK/upstream.log" 2>&1 &
STARTED+=("$!")
wait_port "$UP_PORT"

templates() {
  local r
  for r in customers appointments payments webhooks invoices services; do
    printf '[[route_tally.routes]]\nmethod = "GET"\npath = "/api/v2/%s"\n' "$r"
    printf '[[route_tally.routes]]\nmethod = "POST"\npath = "/api/v2/%s"\n' "$r"
    printf '[[route_tally.routes]]\nmethod = "GET"\npath = "/api/v2/%s/{id}"\n' "$r"
    printf '[[route_tally.routes]]\nmethod = "PUT"\npath = "/api/v2/%s/{id}"\n' "$r"
    printf '[[route_tally.routes]]\npath = "/api/v2/%s/{id}/notes/{note}"\n' "$r"
  done
}

# run NAME -> "requests cpu_us_per_request series"
run() {
  local name="$1" port admin pid c0 c1 out reqs
  port="$(free_port)"; admin="$(free_port)"
  {
    printf '[proxy]\nlisten = "127.0.0.1:%s"\nupstream = "127.0.0.1:%s"\nthreads = 1\ngrace_period = "1s"\nshutdown_timeout = "1s"\n' "$port" "$UP_PORT"
    printf '[admin]\nlisten = "127.0.0.1:%s"\n[log]\nlevel = "warn"\n' "$admin"
    case "$name" in
      off|off-again) printf '[route_tally]\nenabled = false\n' ;;
      matched) printf '[route_tally]\nenabled = true\n'; templates ;;
      unmatched) printf '[route_tally]\nenabled = true\n' ;;
    esac
  } >"$WORK/$name.toml"
  taskset -c "$PROXY_CPU" "$SW" --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
  pid=$!; STARTED+=("$pid")
  wait_port "$port" || { cat "$WORK/$name.log" >&2; return 1; }
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARM}s" -s "$HERE/routes.lua" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  c0="$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')"
  out="$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" -s "$HERE/routes.lua" "http://127.0.0.1:$port/" 2>&1)" || true
  c1="$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')"
  reqs="$(echo "$out" | awk '/requests in/ {print $1}')"
  local series
  series="$(curl -s "http://127.0.0.1:$admin/metrics" | grep -c '^statuswatch_route_responses_total{' || true)"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  python3 -c "import sys; r=int(sys.argv[1]); t=int(sys.argv[2]); print(r, '%.3f' % (t*1e6/int(sys.argv[3])/r), sys.argv[4])" \
    "${reqs:-1}" "$((c1 - c0))" "$TCK" "$series"
}

log "statuswatch $("$SW" --version | awk '{print $2}'), ${DUR}s per target after ${WARM}s of warm-up, $CONNS connections"
if pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; then log "warning: cargo/rustc running; numbers will be noisy"; fi
declare -A US
# A first run of the proxy measures slower whatever its config (cold upstream connections,
# caches, CPU frequency): one priming run, discarded.
run off >/dev/null
printf '%-10s %12s %16s %14s\n' target requests "CPU-us/request" "route series"
for t in off matched unmatched off-again; do
  read -r reqs us series < <(run "$t")
  US[$t]="$us"
  printf '%-10s %12s %16s %14s\n' "$t" "$reqs" "$us" "$series"
done
python3 - "${US[off]}" "${US[matched]}" "${US[unmatched]}" "${US[off-again]}" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import sys
off1, matched, unmatched, off2, load = map(float, sys.argv[1:])
off = (off1 + off2) / 2
print(f"off (mean of both runs) {off:.3f} CPU-us/request; A/A noise off-again/off {off2 / off1:.3f} ({(off2 / off1 - 1) * 100:+.1f} %)")
print(f"ratio matched/off   {matched / off:.3f}  ({(matched / off - 1) * 100:+.1f} %)")
print(f"ratio unmatched/off {unmatched / off:.3f}  ({(unmatched / off - 1) * 100:+.1f} %)")
print("within 5 %:", "yes" if max(matched, unmatched) <= off * 1.05 else "NO",
      "(trust it only when the A/A noise is well below 5 %; load average at the end:", load, ")")
PY

log "in process: cargo bench --bench hot_path -- route/ (builds the bench, then ~30 s)"
(cd "$ROOT" && cargo bench --locked --bench hot_path -- 'route/' >"$WORK/micro.txt" 2>&1) || {
  tail -20 "$WORK/micro.txt" >&2; exit 1; }
python3 - "$WORK/micro.txt" "${US[off]}" "${US[off-again]}" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
unit = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6}
ns = {}
for name, mid, u in re.findall(r"route/(\w+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text):
    ns[name] = float(mid) * unit[u]
per_request_ns = (float(sys.argv[2]) + float(sys.argv[3])) / 2 * 1000
print(f"in process, statuswatch's work per request: off {ns['off']:.1f} ns, matched {ns['matched']:.1f} ns, unmatched {ns['unmatched']:.1f} ns")
for t in ("matched", "unmatched"):
    d = ns[t] - ns["off"]
    print(f"  {t:9s} +{d:.1f} ns = {d / per_request_ns * 100:.2f} % of the proxy's {per_request_ns / 1000:.1f} CPU-us/request")
PY
