//! The KindMachine controller against a real kube-apiserver, the real Docker engine, the local
//! node image and real haproxy: node containers, bootstrap, load-balancer backends, provider IDs.

use std::time::Duration;

use base64::Engine;
use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::{KindCluster, KindMachine, MachineAddressType};
use capkind_test::docker::{
    Janitor, address_on, build_image, docker_cli, engine, images, sh, wait_lb_backends,
};
use capkind_test::fixtures::{
    bootstrap_secret, is_ready, kindcluster_is_ready, kindmachine_condition as cond,
    kindmachine_until, machine_spec, machine_with_kindmachine, mark_cluster, node_has_provider_id,
    ready_cluster,
};
use capkind_test::{Manager, names, shared, wait};
use kube::api::{Api, DeleteParams};
use kube::{Client, ResourceExt};

struct Env {
    client: Client,
    ns: String,
    machines: Api<KindMachine>,
    cluster: String,
    network: String,
    janitor: Janitor,
    manager: Option<Manager>,
}

/// A namespace, a running manager, and a Cluster whose KindCluster is ready.
async fn env(control_plane_initialized: bool) -> Env {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = Manager::start(client.clone(), &ns).await;
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    let (cluster, network) = (kc.name_any(), kc.spec.network.clone().expect("network"));
    mark_cluster(&client, &ns, &cluster, control_plane_initialized).await;
    Env {
        machines: Api::namespaced(client.clone(), &ns),
        client,
        ns,
        cluster,
        network,
        janitor,
        manager: Some(manager),
    }
}

impl Env {
    /// A Machine and KindMachine with a bootstrap Secret holding `data` in `format`.
    async fn machine(
        &mut self,
        control_plane: bool,
        format: &str,
        data: &str,
        spec: serde_json::Value,
    ) -> String {
        let name = format!(
            "{}-{}",
            self.cluster,
            if control_plane { "cp" } else { "w" }
        ) + &names::unique("m")[names::token().len() + 1..];
        let secret = format!("{name}-bootstrap");
        bootstrap_secret(&self.client, &self.ns, &secret, &self.cluster, format, data).await;
        machine_with_kindmachine(
            &self.client,
            &self.ns,
            &self.cluster,
            &name,
            control_plane,
            Some(&secret),
            spec,
        )
        .await;
        self.janitor.track(name.clone());
        name
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&KindMachine) -> bool,
    ) -> KindMachine {
        kindmachine_until(&self.machines, name, what, Duration::from_secs(90), check).await
    }

    async fn wait_ready(&self, name: &str) -> KindMachine {
        self.wait(name, "KindMachine ready", is_ready).await
    }

    /// Stops the controllers (as a host going down stops them) or starts them again.
    async fn manager(&mut self, running: bool) {
        self.manager = None;
        if running {
            self.manager = Some(Manager::start(self.client.clone(), &self.ns).await);
        }
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn gzip_b64(data: &[u8]) -> String {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    b64(&enc.finish().expect("gzip"))
}

const SENTINEL_CMD: &str =
    "mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete";

/// cloud-config that writes files in every encoding, starts a TLS listener on 6443 answering
/// GET /healthz (like an API server), and writes the sentinel.
fn control_plane_cloud_config() -> String {
    format!(
        "#cloud-config\nwrite_files:\n\
         - path: /etc/capkind-test/plain\n  content: hello plain\n\
         - path: /etc/capkind-test/b64\n  encoding: b64\n  content: {}\n  permissions: '0600'\n\
         - path: /etc/capkind-test/gz\n  encoding: gz+b64\n  content: {}\n  owner: nobody:nogroup\n  permissions: '0640'\n\
         - path: /etc/capkind-test/log\n  content: \"line1\\n\"\n\
         - path: /etc/capkind-test/log\n  content: \"line2\\n\"\n  append: true\n\
         runcmd:\n\
         - [sh, -c, 'openssl req -x509 -newkey rsa:2048 -nodes -keyout /etc/capkind-test/k.pem -out /etc/capkind-test/c.pem -subj /CN=node -days 1 2>/dev/null']\n\
         - 'setsid openssl s_server -accept 6443 -cert /etc/capkind-test/c.pem -key /etc/capkind-test/k.pem -www >/dev/null 2>&1 < /dev/null &'\n\
         - {SENTINEL_CMD}\n",
        b64(b"hello b64"),
        gzip_b64(b"hello gzip")
    )
}

#[tokio::test]
async fn control_plane_machine_is_provisioned_bootstrapped_and_load_balanced() {
    let mut e = env(false).await;
    let name = e
        .machine(
            true,
            "cloud-config",
            &control_plane_cloud_config(),
            machine_spec(),
        )
        .await;
    let km = e.wait_ready(&name).await;

    assert_eq!(
        Some(km.spec.provider_id.as_str()).filter(|p| !p.is_empty()),
        Some(format!("kind://{}/kind/{name}", e.cluster).as_str())
    );
    let st = km.status.clone().expect("status");
    assert_eq!(st.initialization.and_then(|i| i.provisioned), Some(true));
    let c = engine()
        .await
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("container");
    let ip = c.networks[&e.network].ipv4.clone().expect("ip");
    let addresses: Vec<(MachineAddressType, String)> = st
        .addresses
        .iter()
        .map(|a| (a.type_, a.address.clone()))
        .collect();
    assert_eq!(
        addresses,
        [
            (MachineAddressType::Hostname, name.clone()),
            (MachineAddressType::InternalIP, ip.clone()),
            (MachineAddressType::ExternalIP, ip.clone())
        ]
    );
    for t in ["ContainerProvisioned", "BootstrapExecSucceeded", "Ready"] {
        assert_eq!(cond(&km, t).map(|c| c.status), Some("True".into()), "{t}");
    }
    assert_eq!(c.labels["io.x-k8s.kind.role"], "control-plane");
    assert_eq!(c.labels["io.x-k8s.kind.cluster"], e.cluster);
    assert!(
        c.published.contains_key(&6443),
        "control-plane nodes publish 6443"
    );

    // The files, with their content, modes and owners.
    assert_eq!(
        sh(&name, "cat /etc/capkind-test/plain").await,
        "hello plain"
    );
    assert_eq!(
        sh(
            &name,
            "cat /etc/capkind-test/b64; stat -c ' %a %U' /etc/capkind-test/b64"
        )
        .await,
        "hello b64 600 root"
    );
    assert_eq!(
        sh(
            &name,
            "cat /etc/capkind-test/gz; stat -c ' %a %U:%G' /etc/capkind-test/gz"
        )
        .await,
        "hello gzip 640 nobody:nogroup"
    );
    assert_eq!(sh(&name, "cat /etc/capkind-test/log").await, "line1\nline2");

    // The load balancer forwards to the node's listener.
    let lb = engine()
        .await
        .inspect(&format!("{}-lb", e.cluster))
        .await
        .expect("inspect")
        .expect("lb");
    let config = sh(&lb.name, "cat /usr/local/etc/haproxy/haproxy.cfg").await;
    assert!(
        config.contains(&format!("server {name} {ip}:6443 weight 100")),
        "{config}"
    );
    let port = lb.published[&6443][0].host_port;
    capkind_test::http::wait_for_https_body(
        &format!("https://127.0.0.1:{port}/healthz"),
        "s_server",
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test]
async fn worker_waits_for_the_control_plane() {
    let mut e = env(false).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    let km = e
        .wait(&name, "waiting for the control plane", |km| {
            cond(km, "ContainerProvisioned")
                .is_some_and(|c| c.reason == "WaitingForControlPlaneInitialized")
        })
        .await;
    assert!(!km.provisioned());
    assert!(
        engine()
            .await
            .inspect(&name)
            .await
            .expect("inspect")
            .is_none(),
        "container created too early"
    );
    mark_cluster(&e.client, &e.ns, &e.cluster, true).await;
    let km = e.wait_ready(&name).await;
    let c = engine()
        .await
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("container");
    assert_eq!(c.labels["io.x-k8s.kind.role"], "worker");
    assert!(c.published.is_empty(), "workers publish nothing");
    assert_eq!(cond(&km, "Ready").map(|c| c.status), Some("True".into()));
}

#[tokio::test]
async fn bootstrap_failure_and_timeout_are_reported() {
    let mut e = env(true).await;
    let failing = "#cloud-config\nwrite_files:\n- path: /etc/secret-key\n  content: TOPSECRET-KEY-MATERIAL\nruncmd:\n- echo step one\n- 'echo about to fail; exit 3'\n- echo never\n";
    let failed = e
        .machine(false, "cloud-config", failing, machine_spec())
        .await;
    let mut slow_spec = machine_spec();
    slow_spec["bootstrapTimeout"] = serde_json::json!("4s");
    let slow = e
        .machine(
            false,
            "cloud-config",
            "#cloud-config\nruncmd:\n- sleep 60\n",
            slow_spec,
        )
        .await;

    let km = e
        .wait(&failed, "bootstrap failure", |km| {
            cond(km, "BootstrapExecSucceeded").is_some_and(|c| c.reason == "BootstrapFailed")
        })
        .await;
    let c = cond(&km, "BootstrapExecSucceeded").expect("condition");
    assert_eq!(c.status, "False");
    assert!(
        c.message
            .contains("command \"echo about to fail; exit 3\" exited with 3"),
        "{}",
        c.message
    );
    assert!(
        c.message.contains("about to fail"),
        "the output's tail is missing: {}",
        c.message
    );
    assert!(
        !c.message.contains("TOPSECRET"),
        "the bootstrap data leaked: {}",
        c.message
    );
    assert_eq!(
        cond(&km, "Ready").map(|c| c.reason),
        Some("BootstrapFailed".into())
    );
    assert!(km.spec.provider_id.is_empty() && !km.provisioned());
    assert_eq!(
        sh(
            &failed,
            "test -e /run/cluster-api/bootstrap-success.complete || echo absent"
        )
        .await,
        "absent"
    );

    let km = e
        .wait(&slow, "bootstrap timeout", |km| {
            cond(km, "BootstrapExecSucceeded").is_some_and(|c| c.reason == "BootstrapTimedOut")
        })
        .await;
    assert!(
        cond(&km, "BootstrapExecSucceeded")
            .expect("c")
            .message
            .contains("within 4s")
    );
    assert_eq!(
        sh(&slow, "pgrep -x sleep || echo stopped").await,
        "stopped",
        "the timed-out bootstrap still runs"
    );
}

#[tokio::test]
async fn ignition_bootstrap() {
    let mut e = env(true).await;
    let unit = "[Unit]\\nDescription=capkind test\\n[Service]\\nType=oneshot\\nExecStart=/bin/sh -c 'mkdir -p /run/cluster-api && echo ok > /run/cluster-api/bootstrap-success.complete'\\n[Install]\\nWantedBy=multi-user.target\\n";
    let ignition = format!(
        r#"{{"ignition": {{"version": "2.3.0"}},
            "storage": {{"files": [{{"path": "/etc/capkind-test/ign", "mode": 384, "contents": {{"source": "data:;base64,{}"}}}}]}},
            "systemd": {{"units": [{{"name": "capkind-test.service", "enabled": true, "contents": "{unit}"}}]}}}}"#,
        b64(b"from ignition")
    );
    let name = e
        .machine(false, "ignition", &ignition, machine_spec())
        .await;
    e.wait_ready(&name).await;
    assert_eq!(
        sh(
            &name,
            "cat /etc/capkind-test/ign; stat -c ' %a' /etc/capkind-test/ign"
        )
        .await,
        "from ignition 600"
    );
    assert_eq!(
        sh(&name, "systemctl is-enabled capkind-test.service").await,
        "enabled"
    );
}

#[tokio::test]
async fn manager_killed_during_bootstrap_never_runs_it_twice() {
    let mut e = env(true).await;
    let data = format!(
        "#cloud-config\nruncmd:\n- echo run >> /var/capkind-runs\n- sleep 5\n- {SENTINEL_CMD}\n"
    );
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait(&name, "bootstrap running", |km| {
        cond(km, "BootstrapExecSucceeded").is_some_and(|c| c.reason == "Bootstrapping")
    })
    .await;
    // Killed where it is (an abort, as a process killed), and a new one started.
    e.manager(true).await;
    let km = e.wait_ready(&name).await;
    assert_eq!(
        sh(&name, "cat /var/capkind-runs").await,
        "run",
        "the bootstrap ran more than once"
    );
    let docker = engine().await;
    let owned = docker
        .list(&[("capkind.x-k8s.io/owner-name", km.name_any().as_str())])
        .await
        .expect("list");
    assert_eq!(owned, std::slice::from_ref(&name), "exactly one container");
}

#[tokio::test]
async fn a_restarted_node_is_ready_again_without_a_second_bootstrap() {
    let mut e = env(true).await;
    let data =
        format!("#cloud-config\nruncmd:\n- echo run >> /var/capkind-runs\n- {SENTINEL_CMD}\n");
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait_ready(&name).await;
    for _ in 0..2 {
        docker_cli(&["restart", "-t", "2", &name]);
        // The restart is seen (the container's events wake the machine) and the machine is
        // ready again once the container runs.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let km = e.wait_ready(&name).await;
        assert_eq!(
            cond(&km, "BootstrapExecSucceeded").map(|c| c.reason),
            Some("BootstrapSucceeded".into())
        );
    }
    assert_eq!(
        sh(&name, "cat /var/capkind-runs").await,
        "run",
        "the bootstrap ran again after a restart"
    );
}

#[tokio::test]
async fn a_node_restarted_during_its_bootstrap_is_reported_not_bootstrapped_again() {
    let mut e = env(true).await;
    let data = format!(
        "#cloud-config\nruncmd:\n- echo run >> /var/capkind-runs\n- sleep 30\n- {SENTINEL_CMD}\n"
    );
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait(&name, "the bootstrap's sleep running", |km| {
        cond(km, "BootstrapExecSucceeded").is_some_and(|c| c.message.contains("step 2 of"))
    })
    .await;
    docker_cli(&["restart", "-t", "2", &name]);
    let km = e
        .wait(&name, "bootstrap reported interrupted", |km| {
            cond(km, "BootstrapExecSucceeded").is_some_and(|c| c.reason == "BootstrapInterrupted")
        })
        .await;
    let c = cond(&km, "BootstrapExecSucceeded").expect("condition");
    assert_eq!(c.status, "False");
    assert!(c.message.contains("step 2 of 3"), "{}", c.message);
    assert!(c.message.contains("delete the Machine"), "{}", c.message);
    assert!(!km.provisioned());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sh(&name, "cat /var/capkind-runs").await,
        "run",
        "the bootstrap ran again"
    );
    assert_eq!(
        sh(&name, "pgrep -x sleep || echo none").await,
        "none",
        "something of the bootstrap runs again"
    );
}

/// Whether the machine's container runs, as its ContainerProvisioned condition says (`ready`
/// stays true once the machine was provisioned, as the contract wants).
fn running(km: &KindMachine) -> bool {
    cond(km, "ContainerProvisioned").is_some_and(|c| c.status == "True")
}

/// A host reboot, simulated three times: the nodes stop (the manager sees them go and takes the
/// control planes out of the load balancer), the manager and the load balancer go down with the
/// host, and every container starts again in another order (the load balancer first, last, in
/// the middle; nodes one by one or together), before the manager. Docker gives containers
/// without a fixed address the next free one in start order; the cluster's containers keep
/// theirs, the control planes are back in the load balancer, every machine is ready again and
/// no bootstrap ran twice.
#[tokio::test]
async fn a_host_reboot_in_any_order_brings_the_cluster_back_on_the_same_addresses() {
    let mut e = env(true).await;
    let data =
        format!("#cloud-config\nruncmd:\n- echo run >> /var/capkind-runs\n- {SENTINEL_CMD}\n");
    let cp0 = e.machine(true, "cloud-config", &data, machine_spec()).await;
    let cp1 = e.machine(true, "cloud-config", &data, machine_spec()).await;
    let w = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    let nodes = [cp0.as_str(), cp1.as_str(), w.as_str()];
    for n in nodes {
        e.wait_ready(n).await;
    }
    let lb = format!("{}-lb", e.cluster);
    let everything = [lb.as_str(), cp0.as_str(), cp1.as_str(), w.as_str()];
    let mut before = Vec::new();
    for c in everything {
        before.push(address_on(c, &e.network).await);
    }
    assert!(before.iter().all(|a| !a.is_empty()), "{before:?}");
    let backends = [(cp0.as_str(), "100"), (cp1.as_str(), "100")];
    wait_lb_backends(&lb, &backends, Duration::from_secs(30)).await;

    let orders: [&[&[&str]]; 3] = [
        &[
            &[lb.as_str()],
            &[w.as_str()],
            &[cp1.as_str()],
            &[cp0.as_str()],
        ],
        &[&[w.as_str(), cp1.as_str(), cp0.as_str()], &[lb.as_str()]],
        &[&[cp1.as_str()], &[lb.as_str()], &[w.as_str(), cp0.as_str()]],
    ];
    for order in orders {
        let mut stop = vec!["stop", "-t", "2"];
        stop.extend(nodes);
        docker_cli(&stop);
        for n in nodes {
            e.wait(n, "the stopped node seen", |km| !running(km)).await;
        }
        e.manager(false).await;
        docker_cli(&["stop", "-t", "2", &lb]);
        for group in order {
            let mut start = vec!["start"];
            start.extend(group.iter());
            docker_cli(&start);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        e.manager(true).await;
        for n in nodes {
            e.wait(n, "the node running again", running).await;
        }
        let mut after = Vec::new();
        for c in everything {
            after.push(address_on(c, &e.network).await);
        }
        assert_eq!(
            after, before,
            "addresses after starting in the order {order:?}"
        );
        wait_lb_backends(&lb, &backends, Duration::from_secs(30)).await;
        let kc = Api::<KindCluster>::namespaced(e.client.clone(), &e.ns)
            .get(&e.cluster)
            .await
            .expect("KindCluster");
        assert!(kindcluster_is_ready(&kc), "{:?}", kc.status);
    }
    for n in nodes {
        assert_eq!(
            sh(n, "cat /var/capkind-runs").await,
            "run",
            "{n} bootstrapped again"
        );
    }
    let owned = engine()
        .await
        .list(&[("io.x-k8s.kind.cluster", e.cluster.as_str())])
        .await
        .expect("list");
    assert_eq!(owned.len(), 4, "{owned:?}");
}

/// A node container that exits during boot (here an entry point that gives up, as systemd
/// does when the host is out of inotify instances, and one that is not in the image) is
/// reported in ContainerProvisioned with its exit code and the last lines of its output, and
/// a Warning event; it is neither re-created nor bootstrapped.
#[tokio::test]
async fn a_node_that_exits_during_boot_is_reported_with_its_exit_code_and_output() {
    let mut e = env(true).await;
    let base = images().busybox;
    let crashing = "capkind.local/test-crashing-node:2";
    // Like a node image whose systemd fails, it has a systemctl that never says the system
    // runs: the bootstrap waits for systemd as in every node image. (With none, a bootstrap
    // started in one of the restart policy's brief runs could finish there, and did in CI.)
    build_image(
        crashing,
        &format!(
            "FROM {base}\nRUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho starting\\nsleep 1\\n' > /usr/local/bin/systemctl && chmod +x /usr/local/bin/systemctl\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo booting; echo 'Failed to create inotify object: Too many open files' >&2; exit 3\"]\n"
        ),
    );
    let missing = "capkind.local/test-missing-entrypoint:1";
    build_image(
        missing,
        &format!("FROM {base}\nENTRYPOINT [\"/sbin/no-such-init\"]\n"),
    );
    let data =
        format!("#cloud-config\nruncmd:\n- echo run >> /var/capkind-runs\n- {SENTINEL_CMD}\n");
    let cases = [
        (crashing, "exited with code 3", "Too many open files"),
        (missing, "exited with code 127", "no-such-init"),
    ];
    let mut names = Vec::new();
    for (image, _, _) in cases {
        let spec = serde_json::json!({"customImage": image});
        names.push(e.machine(false, "cloud-config", &data, spec).await);
    }
    for (name, (image, code, output)) in names.iter().zip(cases) {
        let km = e
            .wait(name, "ContainerExited", |km| {
                cond(km, "ContainerProvisioned").is_some_and(|c| c.reason == "ContainerExited")
            })
            .await;
        let c = cond(&km, "ContainerProvisioned").expect("condition");
        assert_eq!(c.status, "False");
        assert!(
            c.message.starts_with(&format!("Container {name} {code}")),
            "{image}: {}",
            c.message
        );
        assert!(c.message.contains(output), "{image}: {}", c.message);
        assert!(
            !c.message.contains('\x1b') && !c.message.contains('\r'),
            "{:?}",
            c.message
        );
        assert!(!is_ready(&km));
        assert_eq!(
            cond(&km, "BootstrapExecSucceeded").map(|c| c.reason),
            Some("WaitingForContainer".into())
        );
    }
    let warnings = capkind_test::signals::warnings(&e.client, &e.ns).await;
    for name in &names {
        assert!(
            warnings
                .iter()
                .any(|w| w.reason == "ContainerExited" && w.note.contains(name.as_str())),
            "no ContainerExited event for {name}: {warnings:?}"
        );
    }
    // The same container all along: not removed and created again.
    let docker = engine().await;
    let mut ids = Vec::new();
    for name in &names {
        ids.push(
            docker
                .inspect(name)
                .await
                .expect("inspect")
                .expect("kept")
                .id,
        );
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (name, id) in names.iter().zip(&ids) {
        let now = docker.inspect(name).await.expect("inspect").expect("kept");
        assert_eq!(&now.id, id, "{name} was re-created");
    }
    // Deleting the machine removes the container that never booted.
    for name in &names {
        e.machines
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete KindMachine");
    }
    for name in &names {
        wait::until("the container removed", Duration::from_secs(60), || async {
            match docker.inspect(name).await.expect("inspect") {
                None => Ok(()),
                Some(c) => Err(c.state),
            }
        })
        .await;
    }
}

/// Host-wide kernel settings (not per network namespace) as the host reads them.
fn host_values(keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{k}")).expect("read sysctl"))
        .collect()
}

#[tokio::test]
async fn root_in_a_node_cannot_change_the_hosts_kernel_settings() {
    let mut e = env(true).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait_ready(&name).await;
    let keys = [
        "kernel/panic",
        "kernel/panic_on_oops",
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "fs/file-max",
        "fs/protected_regular",
        "kernel/keys/root_maxkeys",
    ];
    let before = host_values(&keys);
    for key in keys {
        let out = sh(
            &name,
            &format!("echo 7 > /proc/sys/{key} && echo written || echo refused"),
        )
        .await;
        assert_eq!(
            out, "refused",
            "/proc/sys/{key} was writable inside the node"
        );
    }
    assert_eq!(
        host_values(&keys),
        before,
        "the host's kernel settings changed"
    );
    // What the kubelet insists on, it reads; the node's own network settings stay its own.
    assert_eq!(
        sh(
            &name,
            "cat /proc/sys/vm/overcommit_memory /proc/sys/kernel/panic"
        )
        .await,
        "1\n10"
    );
    assert_eq!(
        sh(
            &name,
            "echo 1 > /proc/sys/net/ipv4/ip_forward && cat /proc/sys/net/ipv4/ip_forward"
        )
        .await,
        "1"
    );
}

#[tokio::test]
async fn control_planes_drain_and_leave_the_load_balancer() {
    let mut e = env(true).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let first = e.machine(true, "cloud-config", &data, machine_spec()).await;
    let second = e.machine(true, "cloud-config", &data, machine_spec()).await;
    e.wait_ready(&first).await;
    e.wait_ready(&second).await;
    let lb = format!("{}-lb", e.cluster);
    let config = || async { sh(&lb, "cat /usr/local/etc/haproxy/haproxy.cfg").await };
    let cfg = config().await;
    assert!(
        cfg.contains(&format!("server {first} ")) && cfg.contains(&format!("server {second} ")),
        "{cfg}"
    );

    // Deleting the Machine drains its node (weight 0) while the KindMachine is still there.
    let machines = capkind_test::capi::served_machines(&e.client, &e.ns).await;
    let mut m = machines.get(&second).await.expect("machine");
    m.metadata.finalizers = Some(vec!["test.capkind/hold".into()]);
    machines
        .replace(&second, &Default::default(), &m)
        .await
        .expect("hold the Machine");
    machines
        .delete(&second, &DeleteParams::default())
        .await
        .expect("delete Machine");
    e.machines
        .patch(
            &second,
            &Default::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await
        .expect("poke");
    wait::until("second node drained", Duration::from_secs(30), || async {
        let cfg = config().await;
        if cfg
            .lines()
            .any(|l| l.contains(&format!("server {second} ")) && l.contains("weight 0"))
        {
            Ok(())
        } else {
            Err(cfg)
        }
    })
    .await;

    // Deleting the KindMachine removes the container and the backend.
    let volumes = engine()
        .await
        .inspect(&second)
        .await
        .expect("inspect")
        .expect("c")
        .volume_names;
    e.machines
        .delete(&second, &DeleteParams::default())
        .await
        .expect("delete KindMachine");
    wait::deleted(&e.machines, &second, Duration::from_secs(60)).await;
    assert!(
        engine()
            .await
            .inspect(&second)
            .await
            .expect("inspect")
            .is_none(),
        "container left behind"
    );
    capkind_test::docker::assert_volumes_gone(&volumes);
    let cfg = config().await;
    assert!(
        !cfg.contains(&format!("server {second} ")) && cfg.contains(&format!("server {first} ")),
        "{cfg}"
    );
    m = machines.get(&second).await.expect("machine");
    m.metadata.finalizers = None;
    machines
        .replace(&second, &Default::default(), &m)
        .await
        .expect("release the Machine");
}

#[tokio::test]
async fn workload_node_gets_its_provider_id_and_is_initialized_for_an_external_cloud_provider() {
    let mut e = env(true).await;
    // A second API server plays the workload cluster; its kubeconfig goes where CAPI puts it.
    let workload = tokio::task::spawn_blocking(capkind_test::ApiServer::start)
        .await
        .expect("join")
        .expect("workload API server");
    let kubeconfig = std::fs::read_to_string(workload.kubeconfig()).expect("kubeconfig");
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{}-kubeconfig", e.cluster)}, "stringData": {"value": kubeconfig}
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(e.client.clone(), &e.ns)
        .create(&Default::default(), &secret)
        .await
        .expect("kubeconfig secret");
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    let km = e.wait_ready(&name).await;

    // The Node registers after the bootstrap, as a kubelet started with
    // --cloud-provider=external would: tainted until a cloud controller initializes it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(workload.client().await);
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"taints": [
            {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"},
            {"key": "example.com/mine", "effect": "NoSchedule"},
        ]},
    }))
    .expect("node");
    nodes
        .create(&Default::default(), &node)
        .await
        .expect("create Node");
    let expected = km.spec.provider_id.clone();
    assert!(!expected.is_empty(), "provider ID");
    node_has_provider_id(&nodes, &name, &expected, Duration::from_secs(60)).await;

    let node = nodes.get(&name).await.expect("Node");
    let taints: Vec<String> = node
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.key)
        .collect();
    // (The API server adds node.kubernetes.io/not-ready itself: the Node reports no status.)
    assert!(
        !taints
            .iter()
            .any(|t| t == "node.cloudprovider.kubernetes.io/uninitialized")
            && taints.iter().any(|t| t == "example.com/mine"),
        "only the cloud provider's taint goes: {taints:?}"
    );
    let ip = km
        .status
        .as_ref()
        .and_then(|s| {
            s.addresses
                .iter()
                .find(|a| a.type_ == MachineAddressType::InternalIP)
        })
        .map(|a| a.address.clone())
        .expect("the KindMachine's InternalIP");
    let addresses: Vec<(String, String)> = node
        .status
        .and_then(|s| s.addresses)
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        [
            ("InternalIP".to_string(), ip),
            ("Hostname".to_string(), name.clone())
        ]
    );
}

#[tokio::test]
async fn a_lost_container_is_reported_not_recreated() {
    let mut e = env(true).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let name = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait_ready(&name).await;
    engine().await.remove(&name).await.expect("remove by hand");
    let km = e
        .wait(&name, "ContainerDeleted", |km| {
            cond(km, "ContainerProvisioned").is_some_and(|c| c.reason == "ContainerDeleted")
        })
        .await;
    assert_eq!(
        cond(&km, "Ready").map(|c| (c.status, c.reason)),
        Some(("False".into(), "ContainerDeleted".into()))
    );
    assert!(
        cond(&km, "ContainerProvisioned")
            .expect("c")
            .message
            .contains(&name)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        engine()
            .await
            .inspect(&name)
            .await
            .expect("inspect")
            .is_none(),
        "a lost container was re-created"
    );
}

#[tokio::test]
async fn waits_for_bootstrap_data() {
    let e = env(true).await;
    let name = format!("{}-nodata", e.cluster);
    machine_with_kindmachine(
        &e.client,
        &e.ns,
        &e.cluster,
        &name,
        false,
        None,
        machine_spec(),
    )
    .await;
    let km = e
        .wait(&name, "WaitingForBootstrapData", |km| {
            cond(km, "ContainerProvisioned").is_some_and(|c| c.reason == "WaitingForBootstrapData")
        })
        .await;
    assert!(
        km.finalizers()
            .iter()
            .any(|f| f == "kindmachine.infrastructure.cluster.x-k8s.io")
    );
    assert!(
        engine()
            .await
            .inspect(&name)
            .await
            .expect("inspect")
            .is_none()
    );
}

#[tokio::test]
async fn pre_load_images_reach_the_nodes_containerd() {
    let mut e = env(true).await;
    let image = capkind_test::docker::images().haproxy;
    let mut spec = machine_spec();
    spec["preLoadImages"] = serde_json::json!([image]);
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let name = e.machine(false, "cloud-config", &data, spec).await;
    e.wait_ready(&name).await;
    let listed = sh(&name, "ctr --namespace=k8s.io images ls -q").await;
    assert!(
        listed.lines().any(|l| l == image),
        "{image} not in the node's containerd: {listed}"
    );

    let mut missing = machine_spec();
    missing["preLoadImages"] = serde_json::json!(["capkind.local/not-here:1"]);
    let other = e.machine(false, "cloud-config", &data, missing).await;
    // Pulled once the node runs, before its bootstrap: from a registry that does not exist.
    let km = e
        .wait(&other, "missing image reported", |km| {
            cond(km, "BootstrapExecSucceeded")
                .is_some_and(|c| c.reason == "ImageRegistryUnreachable")
        })
        .await;
    let message = cond(&km, "BootstrapExecSucceeded").expect("c").message;
    assert!(
        message.starts_with(
            "pulling image capkind.local/not-here:1 failed (the registry cannot be reached)"
        ) && message.contains("no such host"),
        "{message}"
    );
}

#[tokio::test]
async fn deleting_a_cluster_leaves_no_container_or_volume() {
    let mut e = env(true).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let cp = e.machine(true, "cloud-config", &data, machine_spec()).await;
    let worker = e
        .machine(false, "cloud-config", &data, machine_spec())
        .await;
    e.wait_ready(&cp).await;
    e.wait_ready(&worker).await;
    let docker = engine().await;
    let cluster_label = ("io.x-k8s.kind.cluster", e.cluster.as_str());
    let containers = docker.list(&[cluster_label]).await.expect("list");
    assert_eq!(containers.len(), 3, "{containers:?}");
    let mut volumes = Vec::new();
    for c in &containers {
        volumes.extend(
            docker
                .inspect(c)
                .await
                .expect("inspect")
                .expect("container")
                .volume_names,
        );
    }

    // As Cluster API deletes a cluster: the machines first, then the infrastructure cluster.
    for m in [&cp, &worker] {
        e.machines
            .delete(m, &DeleteParams::default())
            .await
            .expect("delete KindMachine");
    }
    wait::until("KindMachines gone", Duration::from_secs(60), || async {
        let left = e
            .machines
            .list(&Default::default())
            .await
            .map_err(|err| err.to_string())?;
        if left.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} left", left.items.len()))
        }
    })
    .await;
    let kcs: Api<KindCluster> = Api::namespaced(e.client.clone(), &e.ns);
    kcs.delete(&e.cluster, &DeleteParams::default())
        .await
        .expect("delete KindCluster");
    wait::deleted(&kcs, &e.cluster, Duration::from_secs(60)).await;
    assert!(
        docker
            .list(&[cluster_label])
            .await
            .expect("list")
            .is_empty(),
        "containers left behind"
    );
    capkind_test::docker::assert_volumes_gone(&volumes);
}

#[tokio::test]
async fn a_paused_machine_is_left_alone() {
    let mut e = env(true).await;
    let data = format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n");
    let mut spec = machine_spec();
    spec["bootstrapTimeout"] = serde_json::json!("5m");
    let name = format!("{}-paused", e.cluster);
    bootstrap_secret(&e.client, &e.ns, &name, &e.cluster, "cloud-config", &data).await;
    let km = machine_with_kindmachine(
        &e.client,
        &e.ns,
        &e.cluster,
        &name,
        false,
        Some(&name),
        spec,
    )
    .await;
    e.janitor.track(name.clone());
    // Paused right away; it may have been reconciled once before the annotation landed.
    let patch = serde_json::json!({"metadata": {"annotations": {"cluster.x-k8s.io/paused": ""}}});
    e.machines
        .patch(
            &km.name_any(),
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("pause");
    let paused = e
        .wait(&name, "Paused", |km| {
            cond(km, "Paused").is_some_and(|c| c.status == "True")
        })
        .await;
    assert!(
        cond(&paused, "Paused")
            .expect("c")
            .message
            .contains("cluster.x-k8s.io/paused annotation")
    );
    let before = engine()
        .await
        .inspect(&name)
        .await
        .expect("inspect")
        .map(|c| c.id);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        engine()
            .await
            .inspect(&name)
            .await
            .expect("inspect")
            .map(|c| c.id),
        before,
        "touched while paused"
    );
    let unpause =
        serde_json::json!({"metadata": {"annotations": {"cluster.x-k8s.io/paused": null}}});
    e.machines
        .patch(
            &name,
            &Default::default(),
            &kube::api::Patch::Merge(&unpause),
        )
        .await
        .expect("unpause");
    e.wait_ready(&name).await;
}
