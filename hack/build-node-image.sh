#!/usr/bin/env bash
# Builds capkind.local/node:v1.20.2-<hash>, a Kubernetes node image laid out like kindest/node,
# from Debian packages and the binaries of hack/install-kubernetes.sh; no registry is used:
#   /sbin/init (systemd) behind /usr/local/bin/entrypoint, which prepares a node container run
#     without --privileged (hack/node-image/rootfs/usr/local/bin/entrypoint says what and why)
#   containerd + runc (CRI, cgroupfs, restrict_oom_score_adj, overlayfs on the /var volume)
#   kubelet, kubeadm, kubectl, crictl in /usr/bin; the kubelet unit with kubeadm's drop-in
#   the images kubeadm v1.20.2 runs, already unpacked in containerd's namespace k8s.io, so
#     nothing is pulled: k8s.gcr.io/kube-{apiserver,controller-manager,scheduler,proxy}:v1.20.2,
#     etcd:3.4.13-0 (Debian's etcd-server 3.4.23) and pause:3.2. No CoreDNS (Debian has none).
#   capkind-cni: the pod network (Debian's CNI plugins and a route per peer Node's podCIDR)
# The files that go into the image are in hack/node-image/rootfs. The tag hashes this script,
# those files and the name of the binaries directory (which names their recipe); an image with
# that tag already in Docker is reused. Logs go to stderr; the last line of stdout is
#   export CAPKIND_TEST_KUBE_NODE_IMAGE=<image>
# CAPKIND_KUBERNETES_BIN_DIR=<dir> uses that directory instead of running install-kubernetes.sh
# (it must hold the same binaries: for trying out binaries that are not built the usual way).
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
files="$here/node-image/rootfs"

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer"

bin_dir=${CAPKIND_KUBERNETES_BIN_DIR:-$("$here/install-kubernetes.sh" | tail -n 1)}
[ -f "$bin_dir/.complete" ] || die "no complete Kubernetes binaries in '$bin_dir'"
for b in kubelet kubeadm kubectl crictl pause kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing"
done

version="v$KUBERNETES_SRC_VERSION"
hash=$({
  cat "$0"
  (cd "$here/node-image" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
    stat -c '%n %a' "$f"; if [ -L "$f" ]; then readlink "$f"; else cat "$f"; fi
  done)
  basename "$bin_dir"
} | sha256sum | cut -c1-10)
image="capkind.local/node:$version-$hash"
mirror="${CAPKIND_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$CAPKIND_CACHE/build-node-image"
root="$work/rootfs"

# The images kubeadm v1.20.2 wants (`kubeadm config images list`), but CoreDNS.
etcd_tag=3.4.13-0
pause_tag=3.2

# Packages of the node. conntrack, iptables, iproute2 (ip, tc), util-linux (nsenter), mount,
# ebtables, ethtool, socat and coreutils (touch) are kubeadm's preflight list; ipset is for the
# kube-proxy image, which is made of files of this root; etcd-client (etcdctl) is what the
# control plane provider's etcd member removal and a person looking at etcd use.
packages=systemd,systemd-sysv,dbus,containerd,runc,iptables,iproute2,conntrack,ebtables,ethtool
packages+=,socat,kmod,procps,util-linux,mount,ca-certificates,containernetworking-plugins
packages+=,libseccomp2,ipset,etcd-client

# Units a node container must not run: consoles and logins, timers, and everything that would
# change the host's kernel (sysctl.d settings, binfmt_misc, kernel modules, the kernel's audit log).
masked_units=(
  getty.target console-getty.service getty-static.service systemd-logind.service
  systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount
  proc-sys-fs-binfmt_misc.mount systemd-modules-load.service systemd-journald-audit.socket
  sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount
  modprobe@.service systemd-pstore.service systemd-firstboot.service systemd-update-utmp.service
  systemd-update-utmp-runlevel.service systemd-ask-password-wall.path systemd-ask-password-console.path
  e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer
  dpkg-db-backup.timer fstrim.timer remote-fs.target
)

step_start=0
step() { step_start=$SECONDS; log "$*"; }
step_done() { log "  done in $((SECONDS - step_start)) s"; }

make_rootfs() {
  step "debootstrap bookworm (minbase) into $root"
  apt_install debootstrap
  mkdir -p "$CAPKIND_CACHE/debootstrap-cache"
  debootstrap --variant=minbase --cache-dir="$CAPKIND_CACHE/debootstrap-cache" \
    --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
  step_done
}

# Debian's etcd, for the etcd image: downloaded with the root's apt (before its lists go).
fetch_etcd() {
  step "fetching Debian's etcd-server"
  mkdir -p "$work/etcd-deb"
  chroot "$root" sh -c 'cd /tmp && apt-get download -qq etcd-server' >&2 || die "apt-get download etcd-server failed"
  dpkg-deb -x "$root"/tmp/etcd-server_*.deb "$work/etcd-deb"
  rm -f "$root"/tmp/etcd-server_*.deb
  [ -x "$work/etcd-deb/usr/bin/etcd" ] || die "no etcd in the etcd-server package"
  step_done
}

configure_rootfs() {
  step "configuring the node root"
  cp -R --preserve=mode "$files/." "$root/" # owned by root, whoever owns the checkout
  rm -f "$root/etc/cni/net.d/.keep"
  for b in kubelet kubeadm kubectl crictl; do install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"; done
  chroot "$root" systemctl mask "${masked_units[@]}" >/dev/null 2>&1
  chroot "$root" systemctl enable containerd.service kubelet.service capkind-cni.service >/dev/null 2>&1 \
    || die "enabling the node's units failed"
  # Nothing from sysctl.d is ever applied (systemd-sysctl is masked); remove the temptation.
  rm -f "$root"/usr/lib/sysctl.d/*.conf "$root"/etc/sysctl.d/*.conf
  # A machine-id per node, written by the entrypoint at the first boot.
  : >"$root/etc/machine-id"
  ln -sf /etc/machine-id "$root/var/lib/dbus/machine-id"
  step_done
}

trim_rootfs() {
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/run/*
}

# put DEST PATH...: copy each PATH of the node root into DEST with every symbolic link on the
# way (the root is merged-/usr: /lib, /lib64, /bin, /sbin are links into /usr).
put() {
  local dest=$1 p t; shift
  for p in "$@"; do
    while :; do
      mkdir -p "$dest$(dirname "$p")"
      cp -a "$root$p" "$dest$p"
      [ -L "$root$p" ] || break
      t=$(readlink "$root$p")
      case $t in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
    done
  done
}

# with_libs DEST FILE...: FILEs (paths in the node root) and the shared libraries they load.
with_libs() {
  local dest=$1 f; shift
  put "$dest" "$@"
  for f in "$@"; do
    put "$dest" $(chroot "$root" ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | sort -u)
  done
}

new_layer_root() {
  rm -rf "$1"; mkdir -p "$1/usr/local/bin" "$1/usr/bin" "$1/usr/sbin" "$1/usr/lib" "$1/usr/lib64" "$1/etc" "$1/tmp"
  ln -s usr/bin "$1/bin"; ln -s usr/sbin "$1/sbin"; ln -s usr/lib "$1/lib"; ln -s usr/lib64 "$1/lib64"
  chmod 1777 "$1/tmp"
}

# oci_image NAME DIR ENTRYPOINT_JSON: an OCI image archive $work/images/<n>.tar of one gzip layer
# (DIR), named NAME for containerd (io.containerd.image.name).
oci_image() {
  local name=$1 dir=$2 entrypoint=$3 w="$work/oci" n=${1##*/}
  rm -rf "$w"; mkdir -p "$w/blobs/sha256" "$work/images"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -c . >"$w/layer.tar"
  local diff_id; diff_id=$(sha256sum <"$w/layer.tar" | cut -d' ' -f1)
  gzip -n -6 <"$w/layer.tar" >"$w/layer.tar.gz"; rm "$w/layer.tar"
  local layer; layer=$(sha256sum <"$w/layer.tar.gz" | cut -d' ' -f1)
  local layer_size; layer_size=$(stat -c %s "$w/layer.tar.gz")
  mv "$w/layer.tar.gz" "$w/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"capkind hack/build-node-image.sh"}]}' \
    "$entrypoint" "$diff_id" >"$w/config.json"
  local config; config=$(sha256sum <"$w/config.json" | cut -d' ' -f1)
  local config_size; config_size=$(stat -c %s "$w/config.json")
  mv "$w/config.json" "$w/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$w/manifest.json"
  local manifest; manifest=$(sha256sum <"$w/manifest.json" | cut -d' ' -f1)
  local manifest_size; manifest_size=$(stat -c %s "$w/manifest.json")
  mv "$w/manifest.json" "$w/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest" "$manifest_size" "$name" "${name##*:}" >"$w/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$w/oci-layout"
  tar -C "$w" -cf "$work/images/${n%%:*}.tar" oci-layout index.json blobs
  rm -rf "$w"
}

make_images() {
  step "making the control-plane images"
  local l="$work/layer" b
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    rm -rf "$l"; mkdir -p "$l/usr/local/bin"
    install -m 0755 "$bin_dir/$b" "$l/usr/local/bin/$b"
    oci_image "k8s.gcr.io/$b:$version" "$l" "[\"/usr/local/bin/$b\"]"
  done

  # kube-proxy: iptables (nft, as the node's), conntrack and ipset, with their libraries.
  new_layer_root "$l"
  install -m 0755 "$bin_dir/kube-proxy" "$l/usr/local/bin/kube-proxy"
  with_libs "$l" /usr/sbin/xtables-nft-multi /usr/sbin/conntrack /usr/sbin/ipset
  with_libs "$l" $(cd "$root" && ls -d usr/lib/x86_64-linux-gnu/xtables/*.so | sed "s|^|/|")
  for b in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$l/usr/sbin/$b"
  done
  for f in /etc/protocols /etc/services /etc/ethertypes; do [ -e "$root$f" ] && put "$l" "$f"; done
  oci_image "k8s.gcr.io/kube-proxy:$version" "$l" '["/usr/local/bin/kube-proxy"]'

  # etcd: Debian's build, dynamically linked; kubeadm runs `etcd` from PATH.
  new_layer_root "$l"
  mkdir -p "$l/var/lib/etcd"
  install -m 0755 "$work/etcd-deb/usr/bin/etcd" "$root/tmp/etcd"
  with_libs "$l" /tmp/etcd
  mv "$l/tmp/etcd" "$l/usr/local/bin/etcd"; rm -f "$root/tmp/etcd"
  oci_image "k8s.gcr.io/etcd:$etcd_tag" "$l" '["/usr/local/bin/etcd"]'

  rm -rf "$l"; mkdir -p "$l"
  install -m 0755 "$bin_dir/pause" "$l/pause"
  oci_image "k8s.gcr.io/pause:$pause_tag" "$l" '["/pause"]'
  rm -rf "$l"
  step_done
}

# Import the images with the node's own containerd, run in the root (a chroot in a private
# mount namespace, so nothing of it stays mounted), and unpack them for overlayfs: they are in
# /var/lib/containerd of the image, which Docker copies into each node's new /var volume.
preload_images() {
  step "importing the images into the node's containerd (namespace k8s.io)"
  cp -a "$work/images" "$root/tmp/images"
  cat >"$root/tmp/containerd-build.toml" <<'TOML'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd/containerd.sock"
TOML
  unshare --mount --propagation private -- chroot "$root" /bin/sh -euc '
    mount -t proc proc /proc; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /dev
    mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/urandom c 1 9
    containerd --config /tmp/containerd-build.toml >/tmp/containerd.log 2>&1 &
    pid=$!; i=0
    until ctr version >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 100 ] || { cat /tmp/containerd.log; exit 1; }; sleep 0.1; done
    for t in /tmp/images/*.tar; do ctr -n k8s.io images import --snapshotter overlayfs "$t" >/dev/null; done
    ctr -n k8s.io images ls -q >&2
    kill $pid; wait $pid || true
  ' || die "importing the images failed"
  rm -rf "$root/tmp/images" "$root/tmp/containerd-build.toml" "$root/tmp/containerd.log" "$root"/run/*
  step_done
}

# Import the root, then set the image's metadata with a Dockerfile of metadata instructions only.
import_image() {
  step "docker import $image"
  tar -C "$root" -c . | docker import - "$image-rootfs" >/dev/null
  printf 'FROM %s\n%s\n' "$image-rootfs" 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
ENV container=docker
STOPSIGNAL SIGRTMIN+3' | DOCKER_BUILDKIT=0 docker build -q -t "$image" - >/dev/null
  docker rmi "$image-rootfs" >/dev/null
  step_done
}

if docker image inspect "$image" >/dev/null 2>&1; then
  log "$image is already built"
else
  need_root
  log "building $image from $bin_dir"
  rm -rf "$work"; mkdir -p "$work"
  make_rootfs
  fetch_etcd
  configure_rootfs
  trim_rootfs
  make_images
  preload_images
  import_image
  rm -rf "$work"
  log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1000000}'))"
fi
echo "export CAPKIND_TEST_KUBE_NODE_IMAGE=$image"
