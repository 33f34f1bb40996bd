# shellcheck shell=bash
# Shared shell helpers for dev.sh and bench/run.sh (sourced, never run).
# The sourcing script may set LOG_TAG (the prefix of its messages) before sourcing.
#   log MSG...          "[TAG HH:MM:SS] MSG" on stderr
#   as_root CMD...      run CMD as root (directly, or through sudo)
#   apt_install PKG...  install the Debian packages not installed yet (apt-get update at most once)
#   ensure_cargo        put ~/.cargo/bin on PATH if needed; fail without cargo
#   free_port           a free TCP port on 127.0.0.1
#   wait_port PORT      wait (up to 10 s) until something listens on 127.0.0.1:PORT
[ -n "${STATUSWATCH_LIB_SH:-}" ] && return 0
STATUSWATCH_LIB_SH=1
: "${LOG_TAG:=statuswatch}"

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "$LOG_TAG: need root (or sudo) to install: $*" >&2; return 1; fi
}

APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  log "installing ${missing[*]} (apt)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_cargo() {
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null && return 0
  echo "$LOG_TAG: no Rust toolchain (cargo) found; install rustup first" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  local port="$1" _
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listening on 127.0.0.1:$port"; return 1
}
