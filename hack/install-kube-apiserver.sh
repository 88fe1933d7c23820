#!/usr/bin/env bash
# Provides a kube-apiserver binary for the tests and prints its path.
# Order: $KUBEBUILDER_ASSETS/kube-apiserver, kube-apiserver on PATH, the cache, else build it from
# Debian's kubernetes source package (see ../shared/TESTENV.md for why reflect2 is replaced).
source "$(dirname "$0")/lib.sh"

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ]; then
  echo "$KUBEBUILDER_ASSETS/kube-apiserver"; exit 0
fi
if command -v kube-apiserver >/dev/null 2>&1; then
  command -v kube-apiserver; exit 0
fi
out="$CAPKIND_CACHE/kube-apiserver-v$KUBERNETES_SRC_VERSION"
if [ -x "$out" ]; then echo "$out"; exit 0; fi

apt_install golang-go rsync jq golang-github-modern-go-reflect2-dev ca-certificates dpkg-dev

work="$CAPKIND_CACHE/build-kubernetes"
rm -rf "$work"; mkdir -p "$work/lists/partial"
src_list="$work/deb-src.sources"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
aptopts=(-o "Dir::Etc::sourcelist=$src_list" -o Dir::Etc::sourceparts=/nonexistent
         -o "Dir::State::Lists=$work/lists")
log "fetching Debian's kubernetes source package"
apt-get "${aptopts[@]}" update -qq
(cd "$work" && apt-get "${aptopts[@]}" source --download-only kubernetes >/dev/null)
tarball=$(ls "$work"/kubernetes_*.orig.tar.gz | head -n1)
[ -f "$tarball" ] || die "kubernetes source tarball not downloaded"
tar -C "$work" -xzf "$tarball"
tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
[ -d "$tree" ] || die "kubernetes source tree not found after unpacking"

# reflect2 v1.0.1 faults on Go >= 1.18; Debian ships v1.0.2.
r2="$tree/vendor/github.com/modern-go/reflect2"
rm -rf "$r2"; mkdir -p "$r2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$r2/"
rm -f "$r2/go.mod" "$r2/go.sum"; find "$r2" -name '*_test.go' -delete

log "building kube-apiserver (about 5 minutes on 2 cores)"
mkdir -p "$tree/.go/src/k8s.io"; ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
(cd "$tree" && GOPATH="$tree/.go" CGO_ENABLED=0 make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1) \
  || { tail -n 30 "$work/build.log" >&2; die "kube-apiserver build failed (log: $work/build.log)"; }
cp "$tree/_output/local/bin/linux/amd64/kube-apiserver" "$out.tmp" && mv "$out.tmp" "$out"
rm -rf "$work"
log "kube-apiserver cached at $out"
echo "$out"
