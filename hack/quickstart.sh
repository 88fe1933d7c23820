#!/usr/bin/env bash
# The quick start: on a fresh Debian 12 machine with Docker (as root), installs what it needs
# (the same as the tests: etcd, a kube-apiserver built from Debian's source, the local haproxy
# and node images; all cached), builds capkind, and runs a management plane, the manager and a
# sample cluster until Ctrl-C. Arguments go to the quick start: --kubeconfig FILE to use an
# existing management cluster instead of a local one, --control-planes N, --workers N.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(hack/install-test-deps.sh)"
echo "== building capkind (the first build takes a few minutes)" >&2
cargo build --quiet -p capkind --bin capkind -p capkind-test --bin capkind-quickstart
exec target/debug/capkind-quickstart "$@"
