#!/usr/bin/env bash
# Builds the manager image offline (no registry): a FROM-scratch image with the manager and
# the libraries it links. Usage: hack/build-manager-image.sh [image] [binary]
#   image   default capkind-manager:dev
#   binary  default: target/release/capkind, built with cargo when missing
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
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
strip -o "$context/rootfs/manager" "$binary"
# The dynamic loader and every library ldd resolves, at the paths the binary asks for.
ldd "$binary" | awk '/=> \// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$context/rootfs$(dirname "$lib")"
  cp -L "$lib" "$context/rootfs$lib"
done
# The system's CA bundle (Debian's ca-certificates): the TLS stack loads it at start.
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$context/rootfs/etc/ssl/certs/ca-certificates.crt"
cp Dockerfile "$context/"
DOCKER_BUILDKIT=0 docker build -q -t "$image" "$context" >/dev/null 2>"$context/build.log" \
  || { cat "$context/build.log" >&2; die "docker build failed"; }
log "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
echo "$image"
