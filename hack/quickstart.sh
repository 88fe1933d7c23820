#!/usr/bin/env bash
# The quick start: on a fresh Debian 12 machine with Docker (as root), installs what it needs
# (the same as the tests: etcd, Kubernetes v1.20.2 built from Debian's source, the local haproxy
# and Kubernetes node images; all cached, the first time takes a while), builds capkind, and runs
# a management plane, the manager and a real kubeadm cluster called demo (1 control plane,
# 1 worker) until Ctrl-C. Once every Node is Ready it prints the kubeconfig and the
# `kubectl ... get nodes` to use it; Ctrl-C deletes everything.
#
# Arguments go to the quick start (--help lists them): --name NAME, --control-planes N,
# --workers N, --stand-in for the stand-in bootstrap (seconds per machine, no Kubernetes), and
# --kubeconfig FILE to use an existing management cluster instead of a local one.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(hack/install-test-deps.sh)"
echo "== building capkind (the first build takes a few minutes)" >&2
cargo build --quiet -p capkind --bin capkind -p capkind-test --bin capkind-quickstart
exec target/debug/capkind-quickstart "$@"
