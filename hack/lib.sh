#!/usr/bin/env bash
# Shared settings for the hack/ scripts: where heavy, versioned builds are cached.
# The cache lives outside the checkout so a fresh clone on the same machine reuses it.
set -euo pipefail

CAPKIND_CACHE="${CAPKIND_CACHE:-/var/cache/capkind}"
KUBERNETES_SRC_VERSION="1.20.2"
mkdir -p "$CAPKIND_CACHE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "this script installs packages and must run as root"
}

# apt-get update once per boot of this cache, then install what is missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root
  if [ ! -f /var/lib/apt/periodic/capkind-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    log "apt-get update"
    apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/capkind-updated
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Debian's static busybox (package busybox-static, fetched with apt and cached); prints its path.
busybox_static() {
  local busybox="$CAPKIND_CACHE/busybox-static"
  if [ ! -x "$busybox" ]; then
    local tmp; tmp=$(mktemp -d)
    log "fetching Debian's busybox-static"
    (cd "$tmp" && apt-get download -q busybox-static >/dev/null 2>&1) \
      || { apt-get update -qq && (cd "$tmp" && apt-get download -q busybox-static >/dev/null); } \
      || die "cannot download Debian's busybox-static"
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb"
    install -m 0755 "$tmp/bb/bin/busybox" "$busybox"
    rm -rf "$tmp"
  fi
  echo "$busybox"
}
