#!/usr/bin/env bash
# The Prometheus, promtool and Alertmanager releases users run besides Debian 12's own
# (prometheus 2.42 / prometheus-alertmanager 0.25 from deploy/apt-packages.txt, the oldest
# supported), taken from Debian's archive and unpacked into a cache. Nothing is installed:
# apt runs with a private sources list, state and cache dir under the cache, so the system's
# packages and apt state stay untouched. The binaries are static Go programs.
#   bash scripts/prometheus-versions.sh             fetch what the cache lacks (network only
#                                                   then), check that every binary's --version
#                                                   prints its pinned version, print NAME=VALUE
#                                                   lines on stdout (shell-quoted, for eval)
#   bash scripts/prometheus-versions.sh --offline   the same without network: fails when the
#                                                   cache lacks one (still printing the others)
#   bash scripts/prometheus-versions.sh --versions  the pinned upstream versions only
#   . scripts/prometheus-versions.sh [--offline]    fetch as needed, export the variables
# Variables: PROMETHEUS_3_BIN PROMTOOL_3_BIN PROMETHEUS_2_53_BIN PROMTOOL_2_53_BIN
#   ALERTMANAGER_0_33_BIN AMTOOL_0_33_BIN (paths), each with its *_VERSION (e.g.
#   PROMTOOL_3_VERSION=3.5.3).
# Cache: ${STATUSWATCH_CACHE:-$HOME/.cache/statuswatch}/debian/<package>_<version>/usr/bin/.
# Archive: the machine's own Debian mirror (the first URIs of a deb822 stanza in
# /etc/apt/sources.list.d/*.sources, or the URI of a `deb URI suite ...` line in
# /etc/apt/sources.list or sources.list.d/*.list, serving a plain suite such as bookworm);
# STATUSWATCH_DEBIAN_MIRROR overrides it.

# ---- pinned versions: the one place to change them ----------------------------------------
# Exact Debian package versions (the source package builds prometheus + promtool alike).
# To bump: look the new version up (https://packages.debian.org/<suite>/prometheus, or
# `apt-cache madison prometheus` with the private lists: see the apt-get options below), change
# it here (and DEBIAN_SUITES when it lives in another suite), run this script: it fetches the
# new package and checks that the binaries' --version print the new upstream version. A new
# release series (say Alertmanager 0.34) also means renaming its variables: grep the repository
# for ALERTMANAGER_0_33 / AMTOOL_0_33. A version sid has dropped can no longer be fetched (the
# cache keeps serving it once fetched): bump to what the suite carries now.
PROMETHEUS_3_DEB=3.5.3+ds1-6       # Prometheus 3.5 LTS, Debian sid
PROMETHEUS_2_53_DEB=2.53.3+ds1-2   # Prometheus 2.53 LTS, Debian trixie
ALERTMANAGER_0_33_DEB=0.33.1-5     # Alertmanager 0.33, Debian sid
DEBIAN_SUITES="sid trixie"
# VARIABLE PREFIX, Debian package, package version, binary in /usr/bin
PINS=(
  "PROMETHEUS_3 prometheus $PROMETHEUS_3_DEB prometheus"
  "PROMTOOL_3 promtool $PROMETHEUS_3_DEB promtool"
  "PROMETHEUS_2_53 prometheus $PROMETHEUS_2_53_DEB prometheus"
  "PROMTOOL_2_53 promtool $PROMETHEUS_2_53_DEB promtool"
  "ALERTMANAGER_0_33 prometheus-alertmanager $ALERTMANAGER_0_33_DEB prometheus-alertmanager"
  "AMTOOL_0_33 prometheus-alertmanager $ALERTMANAGER_0_33_DEB amtool"
)
# ---------------------------------------------------------------------------------------------

# Sourced: run in a child bash (no shell options or helpers leak into the caller) and export
# what it prints.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _sw_pv_out="$(bash "${BASH_SOURCE[0]}" "$@")" || {
    echo "prometheus-versions.sh failed (see above); nothing exported" >&2
    unset _sw_pv_out
    return 1
  }
  while IFS= read -r _sw_pv_line; do
    [ -n "$_sw_pv_line" ] && eval "export $_sw_pv_line"
  done <<<"$_sw_pv_out"
  unset _sw_pv_out _sw_pv_line
  return 0
fi

set -euo pipefail
SELF_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # read by lib.sh's log
LOG_TAG=prometheus-versions
# shellcheck source=scripts/lib.sh
. "$SELF_DIR/lib.sh"

CACHE="${STATUSWATCH_CACHE:-$HOME/.cache/statuswatch}/debian"
APTDIR="$CACHE/apt"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { log "error: $*"; exit 1; }

# upstream_version 3.5.3+ds1-6 -> 3.5.3 (no epoch, Debian revision or +repack suffix)
upstream_version() {
  local v="${1#*:}"
  v="${v%-*}"
  v="${v%%+*}"
  printf '%s\n' "${v%%~*}"
}

pkg_dir() { printf '%s/%s_%s\n' "$CACHE" "$1" "$2"; }

# check_bin PATH VERSION: PATH runs and its --version names VERSION (the upstream X.Y.Z)
check_bin() {
  local out first
  if [ ! -x "$1" ]; then
    echo "$1: missing or not executable" >&2
    return 1
  fi
  if ! out="$("$1" --version 2>&1)"; then
    printf '%s --version failed:\n%s\n' "$1" "$out" >&2
    return 1
  fi
  first="${out%%$'\n'*}"
  case "$first" in
    *"version $2+"* | *"version $2 "* | *"version $2") return 0 ;;
  esac
  printf '%s --version says "%s", expected version %s\n' "$1" "$first" "$2" >&2
  return 1
}

# debian_mirror: the URI of the machine's Debian archive (not the security one)
debian_mirror() {
  if [ -n "${STATUSWATCH_DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "${STATUSWATCH_DEBIAN_MIRROR%/}"
    return 0
  fi
  local deb822=() classic=() f uri
  for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && deb822+=("$f"); done
  [ -f /etc/apt/sources.list ] && classic+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list; do [ -f "$f" ] && classic+=("$f"); done
  uri=""
  if [ ${#deb822[@]} -gt 0 ]; then
    # stanzas are separated by blank lines; a stanza counts when it is enabled, has Types deb,
    # and names a plain suite (bookworm, sid, stable; not bookworm-security or -updates)
    uri="$(awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled !~ /^[Nn]o/ && suites ~ /(^| )[a-z]+( |$)/ && uris != "") {
          split(uris, u, " ")
          if (u[1] ~ /^https?:\/\//) { print u[1]; found = 1; exit }
        }
        types = ""; uris = ""; suites = ""; enabled = ""
      }
      FNR == 1 { flush() }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[A-Za-z-]+:/ {
        key = tolower(substr($0, 1, index($0, ":") - 1))
        val = substr($0, index($0, ":") + 1)
        gsub(/[ \t]+/, " ", val); sub(/^ /, "", val); sub(/ $/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "enabled") enabled = val
      }
      END { if (!found) flush() }
    ' "${deb822[@]}")"
  fi
  if [ -z "$uri" ] && [ ${#classic[@]} -gt 0 ]; then
    # deb [options] URI suite component...
    uri="$(awk '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i ~ /^https?:\/\// && $(i + 1) ~ /^[a-z]+$/) { print $i; exit }
      }
    ' "${classic[@]}")"
  fi
  [ -n "$uri" ] || return 1
  printf '%s\n' "${uri%/}"
}

# fetch PKG=VERSION...: apt-get download into the private apt dir, unpack into the cache
fetch() {
  local mirror suite spec pkg ver deb dir tmp out
  mirror="$(debian_mirror)" || die "no Debian archive found in the machine's apt sources" \
    "(/etc/apt/sources.list.d/*.sources URIs:, or a 'deb URI suite ...' line in /etc/apt/sources.list);" \
    "set STATUSWATCH_DEBIAN_MIRROR=<a Debian mirror URI> to fetch from one"
  [ -r "$KEYRING" ] || die "$KEYRING missing (Debian package debian-archive-keyring)"
  if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
    die "needs apt-get and dpkg-deb (Debian)"
  fi
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs"
  : >"$APTDIR/sources.list"
  for suite in $DEBIAN_SUITES; do
    echo "deb [signed-by=$KEYRING] $mirror $suite main" >>"$APTDIR/sources.list"
  done
  local apt_opts=(
    -o "Dir::Etc::sourcelist=$APTDIR/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Acquire::Languages=none"
  )
  # as root, apt would hand the download to user _apt, who cannot enter $HOME
  [ "$(id -u)" = 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")

  log "apt-get update: $DEBIAN_SUITES from $mirror (private lists in $APTDIR)"
  # an unreachable mirror is only a warning to apt-get update (exit 0): fail on it here
  if ! out="$(apt-get "${apt_opts[@]}" update 2>&1)" ||
    grep -qE '^E: |^W: (Failed to fetch|Some index files failed)|^W: GPG error' <<<"$out"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    die "apt-get update of $DEBIAN_SUITES from $mirror failed (output above; network? mirror?)"
  fi
  grep '^W: ' <<<"$out" >&2 || true
  # A pinned revision the suite has replaced (sid moves on: 3.5.3+ds1-6 -> -7) is taken at
  # the suite's revision of the same upstream version: the binaries are what is pinned.
  local want=() avail alt
  for spec in "$@"; do
    pkg="${spec%%=*}"
    ver="${spec#*=}"
    avail="$(apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')"
    alt=""
    if ! grep -qxF "$ver" <<<"$avail"; then
      while IFS= read -r v; do
        if [ -n "$v" ] && [ "$(upstream_version "$v")" = "$(upstream_version "$ver")" ]; then
          alt="$v"
          break
        fi
      done <<<"$avail"
    fi
    if [ -n "$alt" ]; then
      log "$pkg $ver is no longer in $DEBIAN_SUITES: taking $alt (same upstream version)"
      want+=("$pkg=$alt")
    else
      want+=("$spec")
    fi
  done
  log "apt-get download ${want[*]}"
  if ! out="$(cd "$APTDIR/debs" && apt-get "${apt_opts[@]}" download "${want[@]}" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 20 >&2
    for pkg in $(printf '%s\n' "${@%%=*}" | sort -u); do
      printf 'versions of %s in %s:\n' "$pkg" "$DEBIAN_SUITES" >&2
      apt-cache "${apt_opts[@]}" madison "$pkg" >&2 || true
    done
    die "apt-get download failed (output above). A pinned version no longer in $DEBIAN_SUITES" \
      "must be bumped: see the top of ${BASH_SOURCE[0]}"
  fi
  local i got
  for i in "${!want[@]}"; do
    pkg="${want[$i]%%=*}"
    got="${want[$i]#*=}"
    ver="$(printf '%s\n' "$@" | sed -n "$((i + 1))p")"
    ver="${ver#*=}"
    deb="$(find "$APTDIR/debs" -maxdepth 1 -name "${pkg}_${got//:/%3a}_*.deb" | head -n 1)"
    [ -n "$deb" ] || die "apt-get download left no ${pkg}_${got}_*.deb in $APTDIR/debs"
    # cached under the pinned version: the pins (and the callers' paths) stay one fact
    dir="$(pkg_dir "$pkg" "$ver")"
    tmp="$dir.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    dpkg-deb -x "$deb" "$tmp" || die "dpkg-deb -x $deb failed"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    rm -f "$deb"
    log "unpacked $pkg $got into $dir"
  done
}

# ---- main ------------------------------------------------------------------------------------
MODE=fetch
case "${1:-}" in
  "") ;;
  --offline) MODE=offline ;;
  --versions) MODE=versions ;;
  -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--offline|--versions|--help]" >&2; exit 2 ;;
esac

print_versions() {
  local pin var pkg ver bin
  for pin in "${PINS[@]}"; do
    read -r var pkg ver bin <<<"$pin"
    printf '%s_VERSION=%q\n' "$var" "$(upstream_version "$ver")"
  done
}
if [ "$MODE" = versions ]; then
  print_versions
  exit 0
fi

# the packages (PKG=VERSION) the cache lacks: a package counts once unpacked completely
missing_packages() {
  local pin var pkg ver bin seen=" "
  for pin in "${PINS[@]}"; do
    read -r var pkg ver bin <<<"$pin"
    case "$seen" in *" $pkg=$ver "*) continue ;; esac
    seen+="$pkg=$ver "
    [ -d "$(pkg_dir "$pkg" "$ver")/usr/bin" ] || echo "$pkg=$ver"
  done
}

mapfile -t MISSING < <(missing_packages)
if [ ${#MISSING[@]} -gt 0 ]; then
  if [ "$MODE" = offline ]; then
    log "the cache $CACHE lacks ${MISSING[*]}; fetch them: bash ${BASH_SOURCE[0]}"
  else
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9 # one fetch at a time; the one that waited finds the cache filled
    mapfile -t MISSING < <(missing_packages)
    [ ${#MISSING[@]} -eq 0 ] || fetch "${MISSING[@]}"
    exec 9>&-
  fi
fi

# check every binary, print NAME=VALUE lines for the good ones
print_versions
BAD=0
for pin in "${PINS[@]}"; do
  read -r var pkg ver bin <<<"$pin"
  path="$(pkg_dir "$pkg" "$ver")/usr/bin/$bin"
  if [ ! -e "$path" ] && [ "$MODE" = offline ]; then
    BAD=$((BAD + 1))
    continue
  fi
  if check_bin "$path" "$(upstream_version "$ver")"; then
    printf '%s_BIN=%q\n' "$var" "$path"
  else
    log "$var: $path is not $bin $(upstream_version "$ver") (delete $(pkg_dir "$pkg" "$ver") to fetch it again)"
    BAD=$((BAD + 1))
  fi
done
if [ "$BAD" -gt 0 ]; then
  log "$BAD of ${#PINS[@]} binaries unavailable"
  exit 1
fi
if [ ${#MISSING[@]} -eq 0 ]; then
  log "cache complete ($CACHE): every binary reports its pinned version"
else
  log "fetched ${MISSING[*]}; every binary reports its pinned version"
fi
