#!/usr/bin/env bash
# statuswatch developer entry point. Installs what it needs on a fresh Debian
# machine (as root, or through sudo), then:
#   ./dev.sh demo    build and run the proxy in front of the bundled demo API
#   ./dev.sh test    the whole suite: fmt, clippy, unit + integration tests,
#                    rule tests (Prometheus 2.42, 2.53, 3.5), deploy checks,
#                    end-to-end tests with real Prometheus 3.5/Alertmanager 0.33
#                    (1 s and production cadence), dashboard queries, fuzzing
#                    (time-bounded), bench smoke
#   ./dev.sh bench   the full side-by-side benchmark (bench/run.sh); the rules at
#                    scale: bash bench/scale.sh
# One build profile (release) serves every step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT="$(pwd)"

LOG_TAG=dev.sh
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

setup_build() {
  # pingora-core always builds zlib-ng (cmake); the upstream TLS backend is openssl.
  apt_install cmake pkg-config libssl-dev gcc g++ make ca-certificates
  ensure_cargo || exit 1
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

setup_test() {
  setup_build
  # shellcheck disable=SC2046
  apt_install $(grep -v '^#' deploy/apt-packages.txt) curl
  # Debian 12's prometheus 2.42 / alertmanager 0.25 (above) stay, the oldest supported. The
  # newer releases users run are unpacked from Debian's archive into a cache, not installed
  # (scripts/prometheus-versions.sh; network only when the cache lacks one): every step sees
  # PROMETHEUS_3_BIN PROMTOOL_3_BIN PROMETHEUS_2_53_BIN PROMTOOL_2_53_BIN ALERTMANAGER_0_33_BIN
  # AMTOOL_0_33_BIN (+ *_VERSION). deploy/check.sh runs the rule tests and amtool on each; the
  # e2e suites run on Prometheus 3.5 and Alertmanager 0.33 (PROMETHEUS_BIN, ALERTMANAGER_BIN,
  # PROMTOOL_BIN for `promtool check metrics`).
  local versions line
  versions="$(bash scripts/prometheus-versions.sh)" || {
    log "could not fetch the pinned Prometheus/Alertmanager versions (see above)"
    exit 1
  }
  while IFS= read -r line; do
    case "$line" in [A-Z]*_BIN=* | [A-Z]*_VERSION=*) eval "export $line" ;; esac
  done <<<"$versions"
  export PROMETHEUS_BIN="${PROMETHEUS_3_BIN:?}" ALERTMANAGER_BIN="${ALERTMANAGER_0_33_BIN:?}" \
    PROMTOOL_BIN="${PROMTOOL_3_BIN:?}"
  log "e2e on prometheus ${PROMETHEUS_3_VERSION:-?} and alertmanager ${ALERTMANAGER_0_33_VERSION:-?};" \
    "rules also tested on the system's promtool and on ${PROMTOOL_2_53_VERSION:-?}"
}

build() {
  cargo build --release --locked --bins
}

cmd_demo() {
  setup_build
  build
  exec "$ROOT/target/release/statuswatch" demo "$@"
}

SUITES_PASSED=0
SUITES_FAILED=0
FAILED_NAMES=()
suite() {
  local name="$1"; shift
  echo
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then
    SUITES_PASSED=$((SUITES_PASSED + 1))
    echo "=== $name: ok ($((SECONDS - t0))s)"
  else
    SUITES_FAILED=$((SUITES_FAILED + 1))
    FAILED_NAMES+=("$name")
    echo "=== $name: FAILED ($((SECONDS - t0))s)"
  fi
}

cmd_test() {
  setup_test
  export STATUSWATCH_BIN="$ROOT/target/release/statuswatch"
  suite "cargo fmt --check" cargo fmt --all -- --check
  suite "build (release)" build
  suite "cargo clippy -D warnings" cargo clippy --release --locked --all-targets -- -D warnings
  suite "cargo test (unit + integration)" cargo test --release --locked -- --test-threads=2
  # Every proxy test again with the direct path off (each statuswatch a test
  # starts inherits the override): pingora-proxy alone must pass them too.
  suite "cargo test, proxy.direct_path = false (proxy, paths, hostile, faults)" \
    env STATUSWATCH__PROXY__DIRECT_PATH=false \
    cargo test --release --locked --test proxy --test paths --test hostile --test faults -- --test-threads=2
  suite "fuzz: every target, ${FUZZ_SECONDS:-60} s each (cargo fuzz, stable)" bash scripts/fuzz.sh
  suite "deploy checks (promtool, amtool, kubernetes, systemd)" bash deploy/check.sh
  suite "dashboards lint" python3 tests/e2e/dashboards_lint.py
  suite "docs: relative links and anchors, every runbook_url on its page" \
    bash -c 'python3 scripts/check-links.py --self-test && python3 scripts/check-links.py'
  suite "compose demo without Docker (structure, its commands, a real Prometheus)" \
    python3 deploy/docker/check-compose.py
  suite "e2e: alerts through real Prometheus + Alertmanager" python3 tests/e2e/test_alerts.py
  suite "e2e: one incident, one page (the shipped Alertmanager routes and inhibit rules)" \
    python3 tests/e2e/test_routing.py
  suite "e2e: fleet replay, 1 and 3 sidecars, shipped rules" python3 tests/e2e/test_fleet_replay.py
  suite "e2e: a long incident keeps firing (compressed windows)" python3 tests/e2e/test_long_incident.py
  suite "e2e: production cadence (15 s and 60 s scrape, rules generated for each; 15 s rules under 60 s)" \
    python3 tests/e2e/test_cadence_replay.py
  suite "e2e: every dashboard query against real Prometheus" python3 tests/e2e/test_dashboards.py
  if [ -f bench/run.sh ]; then
    suite "bench smoke" bash bench/run.sh --smoke
  fi
  suite "bench smoke: rules at scale (old vs new rules, real Prometheus)" bash bench/scale.sh --smoke
  echo
  if [ "$SUITES_FAILED" -gt 0 ]; then
    echo "failed suites: ${FAILED_NAMES[*]}"
  fi
  echo "suites: $SUITES_PASSED passed, $SUITES_FAILED failed"
  [ "$SUITES_FAILED" -eq 0 ]
}

cmd_bench() {
  setup_build
  exec bash bench/run.sh "$@"
}

case "${1:-}" in
  demo) shift; cmd_demo "$@" ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  help|-h|--help) sed -n '2,12p' "$ROOT/dev.sh" | sed 's/^# \{0,1\}//' ;;
  *) echo "usage: ./dev.sh demo|test|bench|help" >&2; exit 2 ;;
esac
