#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root), and is quick when all is
# there: Debian packages, a kube-apiserver (cached), and the test images (cached by version).
# Prints the export lines of hack/build-images.sh.
source "$(dirname "$0")/lib.sh"

apt_install etcd-server openssl util-linux procps binutils ca-certificates curl
# A real container registry for the image-pull tests (test/tests/images.rs): Debian's
# distribution registry, and htpasswd (bcrypt) for the one that wants credentials.
apt_install docker-registry apache2-utils
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
command -v docker >/dev/null 2>&1 || die "the Docker engine is not installed; the tests need it (socket /var/run/docker.sock)"
# Every node container runs systemd, which needs inotify instances: with Linux's default of 128
# per user, systemd in the thirtieth or so node exits at boot ("Failed to allocate manager
# object: Too many open files"). kind documents the same limit; raise it as kind suggests.
raise_sysctl() {
  local current; current=$(sysctl -n "$1" 2>/dev/null || echo 0)
  if [ "$current" -lt "$2" ]; then
    need_root
    sysctl -q -w "$1=$2" >/dev/null || die "cannot raise $1 to $2 (the benchmark's 50 nodes need it)"
  fi
}
raise_sysctl fs.inotify.max_user_instances 8192
raise_sysctl fs.inotify.max_user_watches 524288
# etcd-server's package starts a system etcd on 2379; the tests run their own on free ports.
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
# docker-registry's package starts a system registry on :5000; the tests run their own.
if systemctl is-active --quiet docker-registry 2>/dev/null; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

echo "export CAPKIND_KUBERNETES_BIN=$("$(dirname "$0")/install-kubernetes.sh")"
"$(dirname "$0")/build-images.sh"
"$(dirname "$0")/build-node-image.sh" | tail -n 1
