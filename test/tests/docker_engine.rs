//! A probe of the real Docker engine through capkind's Docker layer: the test images exist, and
//! a container with the options kind's node containers need is created, started, inspected,
//! used (exec, upload) and removed together with its volume. What this engine refuses is
//! written down in docs/docker-engine.md.

use std::collections::BTreeMap;
use std::time::Duration;

use capkind::docker::{Bind, ContainerRuntime, ContainerSpec, PortMapping};
use capkind_test::docker::{Janitor, docker_cli, engine, images, token_label};
use capkind_test::{names, wait};

/// The capabilities this engine grants (it refuses `--privileged` and BPF, CHECKPOINT_RESTORE,
/// PERFMON, SYS_RESOURCE; see docs/docker-engine.md).
const CAPS: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "BLOCK_SUSPEND",
    "DAC_READ_SEARCH",
    "IPC_LOCK",
    "IPC_OWNER",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "NET_ADMIN",
    "NET_BROADCAST",
    "SYS_ADMIN",
    "SYS_BOOT",
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

fn node_spec(name: &str, network: &str, image: &str) -> ContainerSpec {
    let (key, value) = token_label();
    ContainerSpec {
        name: name.to_string(),
        hostname: name.to_string(),
        image: image.to_string(),
        labels: BTreeMap::from([
            (key, value),
            ("io.x-k8s.kind.cluster".to_string(), "probe".to_string()),
            (
                "io.x-k8s.kind.role".to_string(),
                "control-plane".to_string(),
            ),
        ]),
        network: network.to_string(),
        cap_add: CAPS.iter().map(|c| c.to_string()).collect(),
        device_cgroup_rules: vec!["a *:* rwm".to_string()],
        unmask_system_paths: true,
        security_opt: ["seccomp=unconfined", "apparmor=unconfined"]
            .map(String::from)
            .to_vec(),
        tmpfs: BTreeMap::from([
            ("/tmp".into(), String::new()),
            ("/run".into(), String::new()),
        ]),
        volumes: vec!["/var".to_string()],
        binds: vec![Bind {
            host_path: "/lib/modules".into(),
            container_path: "/lib/modules".into(),
            read_only: true,
        }],
        cgroupns_private: true,
        restart_unless_stopped: true,
        tty: true,
        ports: vec![PortMapping {
            container_port: 6443,
            host_ip: "127.0.0.1".into(),
            host_port: 0,
        }],
        ..Default::default()
    }
}

fn tar_of(path: &str, mode: u32, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    builder
        .append_data(&mut header, path, content)
        .expect("tar entry");
    builder.into_inner().expect("tar")
}

#[tokio::test]
async fn node_container_lifecycle_on_the_real_engine() {
    let docker = engine().await;
    let imgs = images();
    for image in [&imgs.haproxy, &imgs.node] {
        assert!(
            docker.image_exists(image).await.expect("inspect image"),
            "test image {image} is missing"
        );
    }
    assert!(
        !docker
            .image_exists("capkind.local/absent:none")
            .await
            .expect("inspect"),
        "absent image found"
    );

    let network = names::unique("net");
    let first = docker
        .ensure_network(&network)
        .await
        .expect("create network");
    let again = docker
        .ensure_network(&network)
        .await
        .expect("network again");
    assert_eq!(
        first.id, again.id,
        "ensure_network created a second network"
    );
    assert!(!first.subnets.is_empty(), "network without a subnet");

    let name = names::unique("node");
    let mut janitor = Janitor::default();
    janitor.track_network(&network);
    janitor.track(&name);
    docker
        .create(&node_spec(&name, &network, &imgs.node))
        .await
        .expect("create");
    docker.start(&name).await.expect("start");

    let c = wait::until(
        "systemd running as PID 1",
        Duration::from_secs(30),
        || async {
            let c = docker
                .inspect(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("container vanished")?;
            let comm = docker
                .exec(&name, &["cat", "/proc/1/comm"], None)
                .await
                .map_err(|e| e.to_string())?;
            if c.running && String::from_utf8_lossy(&comm.stdout).trim() == "systemd" {
                Ok(c)
            } else {
                Err(format!(
                    "state {} pid1 {:?}",
                    c.state,
                    String::from_utf8_lossy(&comm.stdout)
                ))
            }
        },
    )
    .await;
    assert_eq!(c.labels["io.x-k8s.kind.role"], "control-plane");
    assert_eq!(c.host.cgroupns_mode, "private");
    assert_eq!(c.host.restart_policy, "unless-stopped");
    assert!(
        c.host.tmpfs.contains_key("/tmp") && c.host.tmpfs.contains_key("/run"),
        "{:?}",
        c.host.tmpfs
    );
    assert!(
        c.host
            .binds
            .contains(&"/lib/modules:/lib/modules:ro".to_string()),
        "{:?}",
        c.host.binds
    );
    for opt in ["seccomp=unconfined", "apparmor=unconfined"] {
        assert!(
            c.host.security_opt.iter().any(|o| o == opt),
            "{opt} missing: {:?}",
            c.host.security_opt
        );
    }
    assert!(
        c.host.cap_add.iter().any(|cap| cap.ends_with("SYS_ADMIN")),
        "{:?}",
        c.host.cap_add
    );
    let published = &c.published[&6443][0];
    assert_eq!(published.host_ip, "127.0.0.1");
    assert_ne!(published.host_port, 0, "no host port was allocated");
    assert!(
        c.networks[&network].ipv4.is_some(),
        "no address on {network}: {:?}",
        c.networks
    );
    assert_eq!(
        c.volume_names.len(),
        1,
        "the /var volume: {:?}",
        c.volume_names
    );
    let (key, value) = token_label();
    let listed = docker
        .list(&[("io.x-k8s.kind.cluster", "probe"), (&key, &value)])
        .await
        .expect("list");
    assert_eq!(listed, std::slice::from_ref(&name));

    // Exec with standard input, and a file upload through the archive API.
    let echoed = docker
        .exec(&name, &["cat"], Some(b"hello".to_vec()))
        .await
        .expect("exec");
    assert_eq!(
        (echoed.exit_code, echoed.stdout.as_slice()),
        (0, &b"hello"[..])
    );
    let failed = docker
        .exec(&name, &["sh", "-c", "echo oops >&2; exit 3"], None)
        .await
        .expect("exec");
    assert_eq!(
        (failed.exit_code, failed.stderr.as_slice()),
        (3, &b"oops\n"[..])
    );
    docker
        .upload(&name, "/", tar_of("etc/capkind-probe", 0o600, b"uploaded"))
        .await
        .expect("upload");
    let stat = docker
        .exec(&name, &["stat", "-c", "%a", "/etc/capkind-probe"], None)
        .await
        .expect("stat");
    assert_eq!(String::from_utf8_lossy(&stat.stdout).trim(), "600");

    docker.remove(&name).await.expect("remove");
    assert!(
        docker.inspect(&name).await.expect("inspect").is_none(),
        "container still there"
    );
    capkind_test::docker::assert_volumes_gone(&c.volume_names[..1]);
    docker
        .remove(&name)
        .await
        .expect("removing an absent container is not an error");
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &network])
        .output();
}

/// Networks of one name, all the provider's (as a create whose answer was lost can leave them:
/// Docker 20.10 refuses no duplicate name through its API), make every lookup by name fail as
/// ambiguous, and no container can start on any of them; `ensure_network` leaves the one in
/// use and goes on.
#[tokio::test]
async fn duplicate_networks_of_a_name_are_settled_to_one() {
    use bollard::models::NetworkCreateRequest;
    let docker = engine().await;
    let raw = bollard::Docker::connect_with_local_defaults().expect("the Docker socket");
    let network = names::unique("net");
    let mut janitor = Janitor::default();
    let create = || {
        raw.create_network(NetworkCreateRequest {
            name: network.clone(),
            labels: Some(std::collections::HashMap::from([(
                capkind::docker::labels::NETWORK_CREATED_BY.to_string(),
                capkind::docker::labels::CREATED_BY_CAPKIND.to_string(),
            )])),
            ..Default::default()
        })
    };
    let first = create().await.expect("create the network").id;
    // A container joins while the name is still unique.
    let name = names::unique("on-dup");
    janitor.track(&name);
    docker_cli(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        &images().busybox,
        "sleep",
        "300",
    ]);
    for _ in 0..2 {
        create().await.expect("create a network of the same name");
    }
    let looked_up = raw.inspect_network(&network, None).await;
    assert!(
        looked_up
            .as_ref()
            .is_err_and(|e| e.to_string().contains("ambiguous")),
        "three networks named {network}: {looked_up:?}"
    );

    let kept = docker
        .ensure_network(&network)
        .await
        .expect("one network again");
    assert_eq!(kept.id, first, "the network in use is kept");
    let left: Vec<String> = raw
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .expect("list networks")
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(network.as_str()))
        .filter_map(|n| n.id)
        .collect();
    assert_eq!(left, [first]);
    docker.remove(&name).await.expect("remove the container");
    assert!(docker.remove_network(&network).await.expect("remove"));
}
