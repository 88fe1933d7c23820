#!/usr/bin/env bash
# Builds every Kubernetes binary the tests and the node image need, from Debian's kubernetes
# source package, and prints the directory that holds them all:
#   kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl
#   crictl  hack/crictl: the part of cri-tools that kubeadm and a person use (Debian has no
#           cri-tools), built against the CRI client vendored in the same tree
#   pause   build/pause/linux/pause.c from the same tree, static
# Three caches, each named by version and a hash of what makes it: the prepared source tree, the
# seven Kubernetes binaries (about 12 minutes on 2 cores when cold), and crictl + pause (seconds),
# so a change to crictl never rebuilds Kubernetes.
# Why reflect2 is replaced: ../shared/TESTENV.md (v1.0.1 faults on Go >= 1.18).
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"

binaries=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl)
# The recipe hash covers this script's Kubernetes part (everything above the crictl marker).
k8s_recipe=$(sed '/^# --- crictl ---$/q' "$0" | sha256sum | cut -c1-10)
tools_recipe=$(cat "$0" "$here"/crictl/*.go | sha256sum | cut -c1-10)
tree="$CAPKIND_CACHE/kubernetes-src-v$KUBERNETES_SRC_VERSION"
k8s_out="$CAPKIND_CACHE/kubernetes-bin-v$KUBERNETES_SRC_VERSION-$k8s_recipe"
out="$CAPKIND_CACHE/kubernetes-v$KUBERNETES_SRC_VERSION-$tools_recipe"
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

apt_install golang-go rsync jq golang-github-modern-go-reflect2-dev ca-certificates dpkg-dev gcc libc6-dev binutils

# kubeadm compares versions: every binary must say v1.20.2, not a git-less dirty version.
export KUBE_GIT_VERSION="v$KUBERNETES_SRC_VERSION" KUBE_GIT_TREE_STATE=clean \
  KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20
export GOPATH="$tree/.go" CGO_ENABLED=0

prepare_tree() {
  [ -f "$tree/.ready" ] && return 0
  local work="$CAPKIND_CACHE/fetch-kubernetes"
  rm -rf "$work" "$tree"; mkdir -p "$work/lists/partial"
  local src_list="$work/deb-src.sources"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
  local aptopts=(-o "Dir::Etc::sourcelist=$src_list" -o Dir::Etc::sourceparts=/nonexistent
                 -o "Dir::State::Lists=$work/lists")
  log "fetching Debian's kubernetes source package"
  apt-get "${aptopts[@]}" update -qq
  (cd "$work" && apt-get "${aptopts[@]}" source --download-only kubernetes >/dev/null)
  local tarball; tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
  [ -f "$tarball" ] || die "kubernetes source tarball not downloaded"
  tar -C "$work" -xzf "$tarball"
  local unpacked; unpacked=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [ -d "$unpacked" ] || die "kubernetes source tree not found after unpacking"
  local r2="$unpacked/vendor/github.com/modern-go/reflect2"
  rm -rf "$r2"; mkdir -p "$r2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$r2/"
  rm -f "$r2/go.mod" "$r2/go.sum"; find "$r2" -name '*_test.go' -delete
  mkdir -p "$unpacked/.go/src/k8s.io"; ln -sfn ../../.. "$unpacked/.go/src/k8s.io/kubernetes"
  mv "$unpacked" "$tree"; rm -rf "$work"
  touch "$tree/.ready"
}

build_kubernetes() {
  [ -f "$k8s_out/.complete" ] && return 0
  prepare_tree
  local what=""; for b in "${binaries[@]}"; do what="$what cmd/$b"; done
  log "building Kubernetes v$KUBERNETES_SRC_VERSION:$what (about 12 minutes on 2 cores)"
  rm -rf "$tree/_output"
  (cd "$tree" && make WHAT="${what# }" >"$CAPKIND_CACHE/kubernetes-build.log" 2>&1) \
    || { tail -n 30 "$CAPKIND_CACHE/kubernetes-build.log" >&2; die "Kubernetes build failed (log: $CAPKIND_CACHE/kubernetes-build.log)"; }
  rm -rf "$k8s_out.tmp"; mkdir -p "$k8s_out.tmp"
  for b in "${binaries[@]}"; do cp "$tree/_output/local/bin/linux/amd64/$b" "$k8s_out.tmp/"; done
  rm -rf "$tree/_output"
  touch "$k8s_out.tmp/.complete"; rm -rf "$k8s_out"; mv "$k8s_out.tmp" "$k8s_out"
}

build_kubernetes
# --- crictl ---
prepare_tree
rm -rf "$out.tmp"; mkdir -p "$out.tmp"
for b in "${binaries[@]}"; do ln "$k8s_out/$b" "$out.tmp/$b"; done
log "building crictl and pause"
rm -rf "$tree/cmd/crictl"; mkdir -p "$tree/cmd/crictl"; cp "$here"/crictl/*.go "$tree/cmd/crictl/"
# GOPATH mode, as the tree's own make builds (its go.mod is not consistent with vendor/).
(cd "$tree/.go/src/k8s.io/kubernetes" && GO111MODULE=off go build -trimpath -ldflags=-s -o "$out.tmp/crictl" ./cmd/crictl) \
  || die "building crictl failed"
gcc -Os -static -DVERSION=v3.2 -o "$out.tmp/pause" "$tree/build/pause/linux/pause.c" || die "building pause failed"
strip "$out.tmp/pause"
touch "$out.tmp/.complete"; rm -rf "$out"; mv "$out.tmp" "$out"
log "Kubernetes binaries in $out"
echo "$out"
