#!/usr/bin/env bash
# Runs the promtool unit tests of the generated rules (promtool test rules *.test.yml,
# one file at a time) with each promtool given and prints a file x version table.
# Usage: ./run.sh [PROMTOOL...]
#   PROMTOOL: promtool binaries; default $PROMTOOL_BINS (space separated), else promtool.
# Exits 1 if any file fails with any promtool (their output follows the table), 2 on
# usage errors.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if [ "$#" -gt 0 ]; then
  bins=("$@")
elif [ -n "${PROMTOOL_BINS:-}" ]; then
  read -r -a bins <<<"$PROMTOOL_BINS"
else
  bins=(promtool)
fi
if [ "${#bins[@]}" -eq 0 ]; then
  echo "run.sh: no promtool given" >&2
  exit 2
fi

shopt -s nullglob
files=(*.test.yml)
shopt -u nullglob
if [ "${#files[@]}" -eq 0 ]; then
  echo "run.sh: no *.test.yml in $(pwd)" >&2
  exit 2
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# results[b * nfiles + f] is passed, failed or missing (promtool not found)
nfiles=${#files[@]}
versions=()
results=()
status=0
for b in "${!bins[@]}"; do
  bin=${bins[$b]}
  if ! command -v "$bin" >/dev/null 2>&1; then
    versions+=("missing")
    for f in "${!files[@]}"; do
      results[b * nfiles + f]=missing
    done
    status=1
    continue
  fi
  version=$("$bin" --version 2>&1 | awk 'NR == 1 { print $3 }') || true
  versions+=("${version:-unknown}")
  echo "run.sh: promtool ${version:-unknown} ($bin): $nfiles files" >&2
  for f in "${!files[@]}"; do
    if "$bin" test rules "${files[$f]}" >"$logs/$b.$f.log" 2>&1; then
      results[b * nfiles + f]=passed
    else
      results[b * nfiles + f]=failed
      status=1
    fi
  done
done

# the table: one row per file, one column per promtool
width=4
for file in "${files[@]}"; do
  [ "${#file}" -gt "$width" ] && width=${#file}
done
colw=()
for b in "${!bins[@]}"; do
  w=${#versions[$b]}
  [ "$w" -lt 7 ] && w=7
  colw+=("$w")
done
printf '%-*s' "$width" "file"
for b in "${!bins[@]}"; do
  printf '  %-*s' "${colw[$b]}" "${versions[$b]}"
done
printf '\n'
for f in "${!files[@]}"; do
  printf '%-*s' "$width" "${files[$f]}"
  for b in "${!bins[@]}"; do
    printf '  %-*s' "${colw[$b]}" "${results[b * nfiles + f]}"
  done
  printf '\n'
done
for b in "${!bins[@]}"; do
  printf '%s: %s\n' "${versions[$b]}" "${bins[$b]}"
done

if [ "$status" -ne 0 ]; then
  for b in "${!bins[@]}"; do
    for f in "${!files[@]}"; do
      case ${results[b * nfiles + f]} in
        failed)
          printf '\n--- %s with promtool %s (%s):\n' "${files[$f]}" "${versions[$b]}" "${bins[$b]}"
          cat "$logs/$b.$f.log"
          ;;
        missing)
          [ "$f" -eq 0 ] && printf '\n--- promtool not found: %s\n' "${bins[$b]}"
          ;;
      esac
    done
  done
  echo "run.sh: FAILED" >&2
  exit 1
fi
echo "run.sh: all passed" >&2
