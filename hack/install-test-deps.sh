#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (as root), and is quick when all is
# there: Debian packages, a kube-apiserver (cached), and the test images (cached by version).
# Prints the export lines of hack/build-images.sh.
source "$(dirname "$0")/lib.sh"

apt_install etcd-server openssl util-linux procps binutils ca-certificates curl
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
command -v docker >/dev/null 2>&1 || die "the Docker engine is not installed; the tests need it (socket /var/run/docker.sock)"
# etcd-server's package starts a system etcd on 2379; the tests run their own on free ports.
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi

"$(dirname "$0")/install-kube-apiserver.sh" >/dev/null
"$(dirname "$0")/build-images.sh"
