#!/usr/bin/env bash
# statuswatch rules scale benchmark (issue 23 section 5): a synthetic fleet of P pods serving a
# real statuswatch scrape at T tenants to a real Prometheus evaluating the rules, old and new
# rules file in the same run. See bench/scale.py for what is measured and how.
#
#   bash bench/scale.sh [--smoke] [--tenants 1000,10000] [--pods 3,10] [--duration 240]
#                       [--old FILE] [--new FILE] [--out DIR] [--bin FILE] [scale.py run options]
#
#   default   T in {1k,10k} x P in {3,10}, 15 s scrape/evaluation, 240 s per case and rules file
#             (~40 min); prints a markdown report and writes it to OUT/scale-report.md
#   --smoke   CI: T=200, P=2, 2 s intervals, 60 s per rules file (~2.5 min); exits non-zero
#             unless every group evaluated, no rule errors, every target up
#   --old     previous rules (default: git show b2fb9fc:deploy/prometheus/rules/statuswatch.rules.yml)
#   --new     rules under test (default: `statuswatch rules --config config/statuswatch.toml`)
#   --out     report directory (default: a new temp dir, printed at the end)
#   --bin     statuswatch binary (default: $STATUSWATCH_BIN, else target/release/statuswatch,
#             built if missing); it is copied first, so a rebuild during the run cannot change it
#   --backfill 1h   give the raw counters that much history first (promtool tsdb
#             create-blocks-from openmetrics); default none
# More options: python3 bench/scale.py run --help (--scrape-interval, --eval-interval,
# --pod-rps, --requests-per-tenant, --no-stats, --keep-tmp, ...).
# Needs prometheus + promtool (Debian package prometheus), wrk, python3 (standard library).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
LOG_TAG=scale
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"   # log, apt_install, ensure_cargo

BIN="${STATUSWATCH_BIN:-}"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    --bin) [ $# -ge 2 ] || { echo "scale.sh: --bin needs a file" >&2; exit 2; }; BIN="$2"; shift 2 ;;
    --bin=*) BIN="${1#--bin=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then apt_install prometheus; fi
command -v wrk >/dev/null || apt_install wrk
command -v python3 >/dev/null || apt_install python3

if [ -z "$BIN" ]; then
  BIN="$ROOT/target/release/statuswatch"
  if [ ! -x "$BIN" ]; then
    ensure_cargo
    log "building target/release/statuswatch"
    (cd "$ROOT" && cargo build --release --locked --bin statuswatch)
  fi
fi
[ -x "$BIN" ] || { echo "scale.sh: no statuswatch binary at $BIN" >&2; exit 1; }

WORK="$(mktemp -d /tmp/swscale-bin.XXXXXX)"
PY=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null || true   # scale.py stops every process it started
    wait "$PY" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cp "$BIN" "$WORK/statuswatch"
log "statuswatch: $("$WORK/statuswatch" --version) (copied from $BIN)"
ulimit -n 65536 2>/dev/null || true

python3 "$HERE/scale.py" run --bin "$WORK/statuswatch" ${ARGS[@]+"${ARGS[@]}"} &
PY=$!
set +e
wait "$PY"
RC=$?
set -e
PY=""
exit "$RC"
