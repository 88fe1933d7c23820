#!/usr/bin/env bash
# Builds the manager image offline (no registry): a FROM-scratch image with the manager and
# the libraries it links.
# Usage: hack/build-manager-image.sh [--dev] [image] [binary]
#   --dev   the development image Tilt live-updates: adds busybox (sh, tar, ...) from Debian's
#           busybox-static and hack/restart-on-change.sh, which restarts the manager whenever a
#           new binary is synced to /capkind/manager
#   image   default capkind-manager:dev
#   binary  default: target/release/capkind, built with cargo when missing
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
dev=false
if [ "${1:-}" = "--dev" ]; then dev=true; shift; fi
image="${1:-capkind-manager:dev}"
binary="${2:-target/release/capkind}"
apt_install ca-certificates binutils
if [ ! -x "$binary" ]; then
  log "building $binary"
  cargo build --release --bin capkind >&2
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/rootfs"
strip -o "$context/manager" "$binary"
# The dynamic loader and every library ldd resolves, at the paths the binary asks for.
ldd "$binary" | awk '/=> \// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
# The system's CA bundle (Debian's ca-certificates): the TLS stack loads it at start.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
if $dev; then
  # busybox from Debian's package, fetched with apt (no registry needed) and cached.
  install -D -m 0755 "$(busybox_static)" "$context/rootfs/bin/busybox"
  for applet in sh tar rm cp mv mkdir chmod stat sleep cat ls ps; do
    ln -s busybox "$context/rootfs/bin/$applet"
  done
  install -m 0755 hack/restart-on-change.sh "$context/rootfs/restart-on-change"
  mkdir -m 1777 "$context/rootfs/tmp"
  mkdir -p "$context/capkind" && mv "$context/manager" "$context/capkind/manager"
  cat > "$context/Dockerfile" <<'DOCKERFILE'
# The development image (hack/build-manager-image.sh --dev): the release image plus busybox and
# a wrapper that restarts the manager when Tilt syncs a new binary into /capkind (owned by the
# manager's user so that it can be replaced without root).
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 capkind/ /capkind/
USER 65532:65532
ENTRYPOINT ["/bin/sh", "/restart-on-change", "/capkind/manager"]
DOCKERFILE
else
  mv "$context/manager" "$context/rootfs/manager"
  cp Dockerfile "$context/"
fi
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$context" >/dev/null 2>"$context/build.log" \
  || { cat "$context/build.log" >&2; die "docker build failed"; }
log "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
echo "$image"
