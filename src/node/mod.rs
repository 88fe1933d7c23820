//! Node containers as kind runs them: the name, the image for a Kubernetes version, and the run
//! options (privileges, tmpfs, the /var volume, /lib/modules, cgroup namespace, labels, ports).
//! Pure: the KindMachine controller creates what this describes. The image table: `images.rs`.

use std::collections::BTreeMap;

use capkind_api::v1beta2::Mount;

use crate::docker::{Bind, Container, ContainerSpec, PortMapping, labels};

mod images;
pub use images::{Mode, NoImage, NodeImage, Published, image, published};

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
    /// How the image runs.
    pub mode: Mode,
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
        cgroupns_private: p.mode.cgroupns_private(),
        restart_unless_stopped: true,
        tty: true,
        ports,
        ..Default::default()
    }
}

/// The proxy variables kind passes from its environment to nodes.
const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The proxy settings of the manager's environment, passed to nodes as kind does.
pub fn proxy_env_from_process() -> Vec<String> {
    PROXY_VARIABLES
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

/// How many lines of a node's console a report of its exit keeps.
pub const EXIT_LOG_LINES: usize = 10;

/// Whether the node container died by itself (its entry point or systemd exited, the engine
/// could not run it) rather than being stopped: the restart policy is bringing it back, or
/// the engine recorded why it could not start it. A stopped container (`docker stop`, a host
/// going down) is neither, whatever its exit code.
pub fn exited_by_itself(c: &Container) -> bool {
    !c.running && (c.state == "restarting" || c.restart_count > 0 || !c.error.is_empty())
}

/// How long a node container the restart policy brought back must stay up before the provider
/// takes it for booted: one that dies at once (a bad image, a host out of inotify instances)
/// is seen dead in that time, not half bootstrapped in the moment it runs.
pub const BOOT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How much longer to wait before a node container that died and was brought back by the
/// restart policy counts as up; `None` when it has been up for [`BOOT_GRACE`] or never died.
pub fn boot_grace_left(
    c: &Container,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<std::time::Duration> {
    if !c.running || c.restart_count == 0 {
        return None;
    }
    let up = (now - c.started_at?).to_std().unwrap_or_default();
    BOOT_GRACE.checked_sub(up).filter(|left| !left.is_zero())
}

/// What a user is told of a node container that exited during boot: its exit code, how often
/// it was restarted, the engine's reason and the last lines of its console (secrets hidden,
/// terminal control sequences removed).
pub fn exit_report(c: &Container, console: &str) -> String {
    let mut head = format!("Container {} exited with code {}", c.name, c.exit_code);
    if c.restart_count > 0 {
        let s = if c.restart_count == 1 { "" } else { "s" };
        head.push_str(&format!(", restarted {} time{s}", c.restart_count));
    }
    if !c.error.is_empty() {
        head.push_str(&format!(": {}", c.error.trim()));
    }
    let console = crate::report::redact(&crate::report::plain(console));
    let lines = crate::report::last_lines(&console, EXIT_LOG_LINES, false);
    if lines.is_empty() {
        head.push_str(" (no output)");
        return head;
    }
    format!("{head}; last lines of its output:\n{}", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(state: &str, running: bool, restarts: i64, error: &str, code: i64) -> Container {
        Container {
            name: "c1-w".into(),
            state: state.into(),
            running,
            restart_count: restarts,
            error: error.into(),
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn a_container_that_died_is_told_from_one_that_was_stopped() {
        let cases = [
            (container("running", true, 0, "", 0), false),
            // Running again after a crash: boot goes on; a new crash is seen when it happens.
            (container("running", true, 2, "", 0), false),
            // docker stop, a host going down: whatever the code, not a crash.
            (container("exited", false, 0, "", 137), false),
            (container("exited", false, 0, "", 0), false),
            (container("restarting", false, 0, "", 3), true),
            (container("exited", false, 4, "", 3), true),
            (
                container("created", false, 0, "exec: \"/init\": not found", 127),
                true,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(exited_by_itself(&c), want, "{c:?}");
        }
    }

    #[test]
    fn a_container_brought_back_after_dying_must_stay_up_before_it_counts() {
        let now = chrono::Utc::now();
        let started = |secs_ago: i64, restarts: i64| Container {
            running: true,
            restart_count: restarts,
            started_at: Some(now - chrono::Duration::seconds(secs_ago)),
            ..Default::default()
        };
        assert_eq!(
            boot_grace_left(&started(3, 1), now),
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(boot_grace_left(&started(10, 1), now), None);
        assert_eq!(boot_grace_left(&started(60, 5), now), None);
        // Never died: no wait, however fresh.
        assert_eq!(boot_grace_left(&started(0, 0), now), None);
        let stopped = Container {
            running: false,
            ..started(1, 2)
        };
        assert_eq!(boot_grace_left(&stopped, now), None);
    }

    #[test]
    fn an_exit_is_reported_with_its_code_and_last_lines() {
        let c = container("restarting", false, 3, "", 1);
        let console: String = (1..=15)
            .map(|i| format!("\x1b[0;31mline {i}\x1b[0m\r\n"))
            .collect::<String>()
            + "token abcdef.0123456789abcdef\r\n";
        let lines: Vec<String> = (7..=15).map(|i| format!("line {i}")).collect();
        assert_eq!(
            exit_report(&c, &console),
            format!(
                "Container c1-w exited with code 1, restarted 3 times; last lines of its output:\n{}\ntoken [redacted]",
                lines.join("\n")
            )
        );
        let never_ran = container("created", false, 0, "exec: \"/init\": not found\n", 127);
        assert_eq!(
            exit_report(&never_ran, ""),
            "Container c1-w exited with code 127: exec: \"/init\": not found (no output)"
        );
        let once = container("restarting", false, 1, "", 2);
        assert_eq!(
            exit_report(&once, "boom\n"),
            "Container c1-w exited with code 2, restarted 1 time; last lines of its output:\nboom"
        );
    }

    #[test]
    fn container_names_follow_kind() {
        assert_eq!(container_name("c1", "c1-md-0-abc"), "c1-md-0-abc");
        assert_eq!(container_name("c1", "worker-1"), "c1-worker-1");
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
            mode: Mode::Kind0_20,
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
            mode: Mode::Kind0_19,
        });
        assert_eq!(spec.cmd.as_deref(), Some(&["/sbin/init".to_string()][..]));
        assert!(!spec.privileged && spec.unmask_system_paths);
        assert!(
            spec.cap_add.iter().any(|c| c == "SYS_ADMIN")
                && !spec.cap_add.iter().any(|c| c == "BPF")
        );
        assert_eq!(spec.labels[labels::ROLE], "worker");
        assert!(spec.ports.is_empty() && !spec.labels.contains_key(labels::FAILURE_DOMAIN));
        assert!(
            !spec.cgroupns_private,
            "an image of kind v0.19 runs in the host's cgroup namespace"
        );
    }
}
