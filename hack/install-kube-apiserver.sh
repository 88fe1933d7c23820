#!/usr/bin/env bash
# Provides a kube-apiserver binary for the tests and prints its path.
# Order: $KUBEBUILDER_ASSETS/kube-apiserver, kube-apiserver on PATH, else the one of the cached
# Kubernetes build (hack/install-kubernetes.sh builds every binary once, from Debian's source).
source "$(dirname "$0")/lib.sh"

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  echo "$KUBEBUILDER_ASSETS/kube-apiserver"; exit 0
fi
if command -v kube-apiserver >/dev/null 2>&1; then
  command -v kube-apiserver; exit 0
fi
bin=$("$(dirname "$0")/install-kubernetes.sh")
[ -x "$bin/kube-apiserver" ] || die "no kube-apiserver in $bin"
echo "$bin/kube-apiserver"
