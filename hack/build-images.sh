#!/usr/bin/env bash
# Builds the local Docker images the tests use, from Debian packages (no registry can be pulled):
#   capkind.local/haproxy:<tag>  the load balancer, laid out like kindest/haproxy
#                                (config at /usr/local/etc/haproxy/haproxy.cfg, haproxy -W -db)
#   capkind.local/node:<tag>     a node like kindest/node: systemd as init, containerd, runc,
#                                plus openssl and socat for test listeners
#   capkind.local/busybox:<tag>  Debian's static busybox alone (FROM scratch), for the Pods of
#                                the real-Kubernetes tests (httpd, wget, sh)
# Each tag is a hash of that image's recipe, so a change rebuilds it and an unchanged recipe
# reuses the image already in Docker. Prints shell lines that export the image names.
source "$(dirname "$0")/lib.sh"

command -v docker >/dev/null || die "docker CLI not found; the tests need the Docker engine"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running, is /var/run/docker.sock there?)"

mirror="${CAPKIND_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# debootstrap a minimal Debian with extra packages into $2, then trim what images never need.
rootfs() {
  local include=$1 dir=$2
  apt_install debootstrap
  mkdir -p "$CAPKIND_CACHE/debootstrap-cache"
  rm -rf "$dir"
  debootstrap --variant=minbase --cache-dir="$CAPKIND_CACHE/debootstrap-cache" \
    --include="$include" bookworm "$dir" "$mirror" >"$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
    "$dir"/usr/share/locale/* "$dir"/var/cache/debconf/*-old
}

# Import a root file system, then set the image's metadata with a Dockerfile that only has
# metadata instructions (docker import cannot set STOPSIGNAL); nothing is pulled.
import() {
  local dir=$1 image=$2 dockerfile=$3
  tar -C "$dir" -c . | docker import - "$image-rootfs" >/dev/null
  printf 'FROM %s\n%s\n' "$image-rootfs" "$dockerfile" | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >/dev/null
  docker rmi "$image-rootfs" >/dev/null
  rm -rf "$dir" "$dir.log"
  log "built $image"
}

build_haproxy() {
  local dir="$CAPKIND_CACHE/rootfs-haproxy"
  log "building $haproxy_image"
  rootfs haproxy "$dir"
  mkdir -p "$dir/usr/local/etc/haproxy"
  # Until the controller writes its own configuration: a valid one with no frontends.
  cat >"$dir/usr/local/etc/haproxy/haproxy.cfg" <<'CFG'
global
  log stdout format raw local0 notice
defaults
  mode tcp
  timeout connect 5s
  timeout client 50s
  timeout server 50s
CFG
  import "$dir" "$haproxy_image" 'CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
STOPSIGNAL SIGUSR1'
}

build_node() {
  local dir="$CAPKIND_CACHE/rootfs-node"
  log "building $node_image"
  rootfs systemd,systemd-sysv,dbus,containerd,runc,iproute2,iptables,procps,kmod,ca-certificates,openssl,socat "$dir"
  # Like kindest/node: no getty on a container console, and a machine-id written at boot.
  chroot "$dir" systemctl mask getty.target systemd-logind.service console-getty.service >/dev/null 2>&1 || true
  chroot "$dir" systemctl enable containerd.service >/dev/null 2>&1
  : >"$dir/etc/machine-id"
  import "$dir" "$node_image" 'ENTRYPOINT ["/sbin/init"]
ENV container=docker
STOPSIGNAL SIGRTMIN+3'
}

build_busybox() {
  local dir; dir=$(mktemp -d)
  mkdir -p "$dir/bin" "$dir/tmp" "$dir/www"
  install -m 0755 "$(busybox_static)" "$dir/bin/busybox"
  for applet in sh httpd wget cat echo hostname sleep ls nc; do ln -s busybox "$dir/bin/$applet"; done
  printf 'FROM scratch\nCOPY . /\nENTRYPOINT ["/bin/busybox"]\n' > "$dir/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$busybox_image" "$dir" >/dev/null
  rm -rf "$dir"
  log "built $busybox_image"
}

# Each image's tag hashes its own recipe (the shell functions that build it), so a change to one
# rebuilds that one only.
tag() { echo "bookworm-$(declare -f "$@" | sha256sum | cut -c1-10)"; }
haproxy_image="capkind.local/haproxy:$(tag rootfs import build_haproxy)"
node_image="capkind.local/node:$(tag rootfs import build_node)"
busybox_image="capkind.local/busybox:$(tag build_busybox busybox_static)"

docker image inspect "$haproxy_image" >/dev/null 2>&1 || build_haproxy
docker image inspect "$node_image" >/dev/null 2>&1 || build_node
docker image inspect "$busybox_image" >/dev/null 2>&1 || build_busybox

echo "export CAPKIND_TEST_HAPROXY_IMAGE=$haproxy_image"
echo "export CAPKIND_TEST_NODE_IMAGE=$node_image"
echo "export CAPKIND_TEST_BUSYBOX_IMAGE=$busybox_image"
