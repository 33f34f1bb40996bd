#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time on the stable toolchain:
# cargo-fuzz with RUSTC_BOOTSTRAP=1 (it passes nightly-only flags) and no
# sanitizer (-s none; the crate has no unsafe code of its own). Each target
# starts from its seeds in fuzz/corpus/<target>, copied to a scratch
# directory so a run never rewrites the repository's corpus. Fails on any
# crash, leaving the reproducer in fuzz/artifacts/<target>/ (re-run it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none --release <target> <file>`).
#
#   bash scripts/fuzz.sh            every target, FUZZ_SECONDS (default 60) each
#   bash scripts/fuzz.sh request_head
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=fuzz
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
log "building ${targets[*]}"
cargo fuzz build -s none --release
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  cp -r corpus/"$t"/. "$scratch/$t"/
  log "$t: ${SECONDS_EACH}s from $(find corpus/"$t" -type f | wc -l) seeds"
  if cargo fuzz run -s none --release "$t" "$scratch/$t" -- \
      -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$scratch/$t.log" | tail -1)"
    rate="$(grep 'stat::average_exec_per_sec' "$scratch/$t.log" | awk '{print $2}')"
    echo "ok   $t: ${rate:-?} exec/s; ${done_line:-no DONE line}"
  else
    failed=1
    echo "FAIL $t: a crash (reproducer in fuzz/artifacts/$t/):"
    grep -E 'panicked|ERROR|SUMMARY' "$scratch/$t.log" | head -5 || true
    tail -20 "$scratch/$t.log"
  fi
done
exit "$failed"
