//! Node containers as kind runs them: the name, the image for a Kubernetes version, and the run
//! options (privileges, tmpfs, the /var volume, /lib/modules, cgroup namespace, labels, ports).
//! Pure: the KindMachine controller creates what this describes.

use std::collections::BTreeMap;

use capkind_api::v1beta1::Mount;

use crate::docker::{Bind, ContainerSpec, PortMapping, labels};

/// The container name of a Machine: the Machine's name when it already starts with the
/// cluster's name, `<cluster>-<machine>` otherwise (kind's and CAPD's rule, which CAPI's log
/// collector relies on).
pub fn container_name(cluster: &str, machine: &str) -> String {
    if machine.starts_with(cluster) {
        machine.to_string()
    } else {
        format!("{cluster}-{machine}")
    }
}

/// The longest hostname Linux sets (HOST_NAME_MAX), which a node container's name must fit.
pub const MAX_HOSTNAME: usize = 64;

/// kindest/node images of kind releases, pinned by digest (from kind's release notes).
const PINNED: &[(&str, &str)] = &[
    // kind v0.24.0
    (
        "v1.31.0",
        "sha256:53df588e04085fd41ae12de0c3fe4c72f7013bba32a20e7325357a1ac94ba865",
    ),
    (
        "v1.30.4",
        "sha256:976ea815844d5fa93be213437e3ff5754cd599b040946b5cca43ca45c2047114",
    ),
];

/// Why no image could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Machine has no spec.version and the KindMachine no spec.customImage, so no node image can be chosen"
)]
pub struct NoImage;

/// The node image: `customImage` when set, else `kindest/node:<version>` (`+` written as `_`,
/// as OCI tags cannot hold `+`), pinned by digest for known kind releases.
pub fn image(custom: Option<&str>, version: Option<&str>) -> Result<String, NoImage> {
    if let Some(custom) = custom.filter(|c| !c.is_empty()) {
        return Ok(custom.to_string());
    }
    let version = version.filter(|v| !v.is_empty()).ok_or(NoImage)?;
    let tag = format!("v{}", version.trim_start_matches('v')).replace('+', "_");
    Ok(match PINNED.iter().find(|(v, _)| *v == tag) {
        Some((_, digest)) => format!("kindest/node:{tag}@{digest}"),
        None => format!("kindest/node:{tag}"),
    })
}

/// How node containers get the rights systemd, containerd and the kubelet need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Privileges {
    /// `--privileged`, as kind and CAPD run nodes.
    #[default]
    Privileged,
    /// Every capability the engine grants, all devices and unmasked /proc and /sys, for
    /// engines that refuse `--privileged` (see docs/docker-engine.md).
    Capabilities,
}

/// The capabilities of [`Privileges::Capabilities`]: all but BPF, CHECKPOINT_RESTORE, PERFMON
/// and SYS_RESOURCE, which restricted engines cannot grant.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// The host's kernel settings a node must never change, and the values the kubelet insists on
/// (its `setupKernelTunables`): they are host-wide, not per network namespace.
pub const KUBELET_SYSCTLS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// What every node container runs first, whatever its image, before the image's own
/// entrypoint and command (passed as its arguments): with --privileged, or with unmasked
/// system paths, everything below /proc/sys but net/ is the HOST's kernel, and systemd (its
/// fs.file-max bump, systemd-sysctl's sysctl.d), the kubelet (kernel.panic, vm.overcommit_memory,
/// ...) and any root process in the node would change it. So /proc/sys is made read-only but
/// net/ (per network namespace), and the values the kubelet wants are shown through read-only
/// files, so that it finds nothing to change. Each step only warns when it cannot be done;
/// run again after a container restart, it does what the fresh mounts need.
pub fn host_guard() -> String {
    let mut wanted = String::new();
    for (key, value) in KUBELET_SYSCTLS {
        wanted.push_str(&format!(" {key}={value}"));
    }
    format!(
        "w() {{ echo \"capkind host guard: $*\" >&2; }}
if ! grep -q ' /proc/sys ro,' /proc/self/mountinfo; then
  if mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys; then
    mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net || w 'cannot keep /proc/sys/net writable'
  else w 'cannot make /proc/sys read-only'; fi
fi
d=/run/capkind-host-guard; mkdir -p $d
for kv in{wanted}; do
  k=${{kv%=*}}; f=$d/$(echo $k | tr / .)
  [ -e /proc/sys/$k ] || continue
  grep -q \" /proc/sys/$k \" /proc/self/mountinfo && continue
  echo ${{kv#*=}} > $f && mount -o ro,bind $f /proc/sys/$k || w \"cannot shadow /proc/sys/$k\"
done
exec \"$@\"
"
    )
}

/// Everything that decides a node container.
#[derive(Clone, Debug)]
pub struct Params<'a> {
    /// The Cluster's name.
    pub cluster: &'a str,
    /// The container name.
    pub name: &'a str,
    /// The image.
    pub image: &'a str,
    /// The Docker network.
    pub network: &'a str,
    /// A control-plane node (else a worker).
    pub control_plane: bool,
    /// The Machine's failure domain.
    pub failure_domain: Option<&'a str>,
    /// Bind mounts from the KindMachine's spec.
    pub extra_mounts: &'a [Mount],
    /// The KindMachine.
    pub owner: &'a labels::Owner,
    /// How the node gets its rights.
    pub privileges: Privileges,
    /// `HTTP_PROXY=...` and the like, passed through from the manager.
    pub proxy_env: &'a [String],
    /// What the image runs by default (entrypoint and cmd), run after [`host_guard`].
    pub image_command: &'a [String],
}

/// The node container.
pub fn container_spec(p: &Params) -> ContainerSpec {
    let role = if p.control_plane {
        labels::ROLE_CONTROL_PLANE
    } else {
        "worker"
    };
    let mut all_labels = BTreeMap::from([
        (labels::CLUSTER.to_string(), p.cluster.to_string()),
        (labels::ROLE.to_string(), role.to_string()),
    ]);
    if let Some(fd) = p.failure_domain {
        all_labels.insert(labels::FAILURE_DOMAIN.to_string(), fd.to_string());
    }
    all_labels.extend(p.owner.labels());
    let mut binds = vec![Bind {
        host_path: "/lib/modules".into(),
        container_path: "/lib/modules".into(),
        read_only: true,
    }];
    binds.extend(p.extra_mounts.iter().map(|m| Bind {
        host_path: m.host_path.clone(),
        container_path: m.container_path.clone(),
        read_only: m.read_only,
    }));
    let mut env = p.proxy_env.to_vec();
    let mut ports = Vec::new();
    if p.control_plane {
        env.push("KUBECONFIG=/etc/kubernetes/admin.conf".into());
        ports.push(PortMapping {
            container_port: 6443,
            host_ip: "127.0.0.1".into(),
            host_port: 0,
        });
    }
    let capabilities = p.privileges == Privileges::Capabilities;
    let command = if p.image_command.is_empty() {
        vec!["/sbin/init".to_string()]
    } else {
        p.image_command.to_vec()
    };
    ContainerSpec {
        entrypoint: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            host_guard(),
            "capkind-host-guard".into(),
        ]),
        cmd: Some(command),
        name: p.name.to_string(),
        hostname: p.name.to_string(),
        image: p.image.to_string(),
        labels: all_labels,
        env,
        network: p.network.to_string(),
        privileged: !capabilities,
        cap_add: if capabilities {
            CAPABILITIES.iter().map(|c| c.to_string()).collect()
        } else {
            Vec::new()
        },
        device_cgroup_rules: if capabilities {
            vec!["a *:* rwm".into()]
        } else {
            Vec::new()
        },
        unmask_system_paths: capabilities,
        security_opt: vec!["seccomp=unconfined".into(), "apparmor=unconfined".into()],
        tmpfs: BTreeMap::from([("/tmp".into(), "rw".into()), ("/run".into(), "rw".into())]),
        volumes: vec!["/var".into()],
        binds,
        cgroupns_private: true,
        restart_unless_stopped: true,
        tty: true,
        ports,
        ..Default::default()
    }
}

/// The proxy settings of the manager's environment, passed to nodes as kind does.
pub fn proxy_env_from_process() -> Vec<String> {
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_kind() {
        assert_eq!(container_name("c1", "c1-md-0-abc"), "c1-md-0-abc");
        assert_eq!(container_name("c1", "worker-1"), "c1-worker-1");
    }

    #[test]
    fn images() {
        assert_eq!(
            image(Some("my/node:x"), Some("v1.31.0")).as_deref(),
            Ok("my/node:x")
        );
        assert_eq!(
            image(None, Some("v1.31.0")).as_deref(),
            Ok(
                "kindest/node:v1.31.0@sha256:53df588e04085fd41ae12de0c3fe4c72f7013bba32a20e7325357a1ac94ba865"
            )
        );
        assert_eq!(
            image(None, Some("1.29.1")).as_deref(),
            Ok("kindest/node:v1.29.1")
        );
        assert_eq!(
            image(None, Some("v1.32.0+build.1")).as_deref(),
            Ok("kindest/node:v1.32.0_build.1")
        );
        assert_eq!(image(Some(""), None), Err(NoImage));
    }

    fn owner() -> labels::Owner {
        labels::Owner {
            kind: "KindMachine".into(),
            namespace: "ns".into(),
            name: "m".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn control_plane_node_options() {
        let mounts = [Mount {
            container_path: "/var/run/docker.sock".into(),
            host_path: "/var/run/docker.sock".into(),
            read_only: false,
        }];
        let owner = owner();
        let proxy = ["HTTP_PROXY=http://p:3128".to_string()];
        let spec = container_spec(&Params {
            cluster: "c1",
            name: "c1-cp-0",
            image: "img",
            network: "kind",
            control_plane: true,
            failure_domain: Some("fd1"),
            extra_mounts: &mounts,
            owner: &owner,
            privileges: Privileges::Privileged,
            proxy_env: &proxy,
            image_command: &["/usr/local/bin/entrypoint".into(), "/sbin/init".into()],
        });
        // The host guard first, then the image's own command.
        let entrypoint = spec.entrypoint.as_deref().expect("entrypoint");
        assert_eq!(entrypoint[..2], ["/bin/sh", "-c"]);
        assert_eq!(entrypoint[3], "capkind-host-guard");
        assert_eq!(
            spec.cmd.as_deref(),
            Some(
                &[
                    "/usr/local/bin/entrypoint".to_string(),
                    "/sbin/init".to_string()
                ][..]
            )
        );
        assert!(
            spec.privileged
                && spec.cap_add.is_empty()
                && spec.cgroupns_private
                && spec.restart_unless_stopped
        );
        assert_eq!(spec.labels[labels::ROLE], "control-plane");
        assert_eq!(spec.labels[labels::FAILURE_DOMAIN], "fd1");
        assert_eq!(spec.labels[labels::OWNER_KIND], "KindMachine");
        assert_eq!(
            spec.ports,
            [PortMapping {
                container_port: 6443,
                host_ip: "127.0.0.1".into(),
                host_port: 0
            }]
        );
        assert_eq!(
            spec.env,
            [
                "HTTP_PROXY=http://p:3128",
                "KUBECONFIG=/etc/kubernetes/admin.conf"
            ]
        );
        assert_eq!(spec.binds.len(), 2);
        assert_eq!(spec.volumes, ["/var"]);
        assert!(spec.tmpfs.contains_key("/run") && spec.tmpfs.contains_key("/tmp"));
    }

    #[test]
    fn the_host_guard_shadows_every_kubelet_sysctl_and_keeps_net_writable() {
        let guard = host_guard();
        for (key, value) in KUBELET_SYSCTLS {
            assert!(guard.contains(&format!(" {key}={value}")), "{key}");
        }
        assert!(guard.contains("mount -o remount,bind,ro /proc/sys"));
        assert!(guard.contains("mount -o remount,bind,rw /proc/sys/net"));
        assert!(guard.trim_end().ends_with("exec \"$@\""));
    }

    #[test]
    fn worker_with_capabilities() {
        let owner = owner();
        let spec = container_spec(&Params {
            cluster: "c1",
            name: "c1-w",
            image: "img",
            network: "kind",
            control_plane: false,
            failure_domain: None,
            extra_mounts: &[],
            owner: &owner,
            privileges: Privileges::Capabilities,
            proxy_env: &[],
            image_command: &[],
        });
        assert_eq!(spec.cmd.as_deref(), Some(&["/sbin/init".to_string()][..]));
        assert!(!spec.privileged && spec.unmask_system_paths);
        assert!(
            spec.cap_add.iter().any(|c| c == "SYS_ADMIN")
                && !spec.cap_add.iter().any(|c| c == "BPF")
        );
        assert_eq!(spec.labels[labels::ROLE], "worker");
        assert!(spec.ports.is_empty() && !spec.labels.contains_key(labels::FAILURE_DOMAIN));
    }
}
