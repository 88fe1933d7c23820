//! A whole cluster lifecycle, driven the way Cluster API core drives an infrastructure provider
//! (test/src/core.rs), against the real manager binary, the real API server, Docker and haproxy,
//! with a second API server as the workload cluster: one control-plane and two worker machines,
//! the control plane scaled to three and back to one, then the Cluster deleted. Run once with a
//! manager that stays up and once with a manager killed (SIGKILL) and restarted at random points
//! throughout; the outcome must be the same, with exactly one container ever created per machine.
//! The seed of the random points is printed; set CAPKIND_E2E_SEED to replay one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::{KindMachine, MachineAddressType};
use capkind_test::core::{CONTROL_PLANE_BOOTSTRAP, CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::engine;
use capkind_test::fixtures::{
    is_ready, kind_spec, kindmachine_until, machine_spec, node_has_provider_id,
};
use capkind_test::process::ManagerProcess;
use capkind_test::signals::{log_problems, warnings};
use capkind_test::{ApiServer, names, shared};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The manager binary, restarted at random points when `chaos` is set.
struct Supervisor {
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicU32>,
    seen: Arc<Mutex<Seen>>,
    handle: tokio::task::JoinHandle<()>,
}

/// What the manager processes showed of their health, each read just before its end.
#[derive(Default)]
struct Seen {
    logs: Vec<std::path::PathBuf>,
    reconcile_errors: f64,
}

fn reconcile_errors(manager: &ManagerProcess) -> f64 {
    ["kindmachine", "kindcluster"]
        .iter()
        .map(|c| {
            manager.metric(&format!(
                "controller_runtime_reconcile_errors_total{{controller=\"{c}\"}}"
            ))
        })
        .sum()
}

/// A small deterministic generator (xorshift), so that a seed replays the same points.
struct Rng(u64);

impl Rng {
    fn next_ms(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

impl Supervisor {
    fn start(namespace: &str, chaos: Option<u64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicU32::new(0));
        let args = ["--namespace".to_string(), namespace.to_string()];
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s, r, seen_by_task) = (stop.clone(), restarts.clone(), seen.clone());
        let handle = tokio::spawn(async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut rng = chaos.map(|seed| Rng(seed | 1));
            loop {
                let mut manager = ManagerProcess::start(shared(), &args);
                seen_by_task
                    .lock()
                    .expect("seen")
                    .logs
                    .push(manager.log.clone());
                let lifetime = rng.as_mut().map(|r| r.next_ms(200, 3000));
                let started = std::time::Instant::now();
                while !s.load(Ordering::Relaxed)
                    && lifetime.is_none_or(|ms| started.elapsed() < Duration::from_millis(ms))
                {
                    if let Ok(Some(status)) = manager.child.try_wait() {
                        panic!(
                            "the manager exited by itself ({status}):\n{}",
                            manager.log_tail()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let errors = reconcile_errors(&manager);
                seen_by_task.lock().expect("seen").reconcile_errors += errors;
                manager.signal("KILL");
                manager.wait_exit(Duration::from_secs(10), "SIGKILL").await;
                if s.load(Ordering::Relaxed) {
                    return;
                }
                r.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            stop,
            restarts,
            seen,
            handle,
        }
    }

    /// Stops the manager; how often it was restarted, and what its processes showed.
    async fn finish(self) -> (u32, Seen) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("the supervisor panicked");
        let seen = std::mem::take(&mut *self.seen.lock().expect("seen"));
        (self.restarts.load(Ordering::Relaxed), seen)
    }
}

struct Lifecycle {
    core: CoreCluster,
    machines: Api<KindMachine>,
    nodes: Api<Node>,
    network: String,
    lb: String,
}

impl Lifecycle {
    async fn ready(&self, name: &str) -> KindMachine {
        let what = format!("KindMachine {name} ready");
        kindmachine_until(&self.machines, name, &what, READY_TIMEOUT, is_ready).await
    }

    /// Everything a user sees of a ready machine: one running container with kind's labels,
    /// its address in the status, its provider ID, and the provider ID on its workload Node
    /// (registered here as its kubelet would).
    async fn check_machine(&self, name: &str, role: Role) {
        let km = self.ready(name).await;
        let docker = engine().await;
        let c = docker
            .inspect(name)
            .await
            .expect("inspect")
            .unwrap_or_else(|| panic!("no container {name}"));
        assert!(c.running, "{name} is not running");
        let role_label = match role {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        };
        assert_eq!(c.labels["io.x-k8s.kind.role"], role_label);
        assert_eq!(c.labels["io.x-k8s.kind.cluster"], self.core.name);
        let ip = c.networks[&self.network].ipv4.clone().expect("address");
        let addresses: Vec<(MachineAddressType, String)> = km
            .status
            .as_ref()
            .expect("status")
            .addresses
            .iter()
            .map(|a| (a.type_, a.address.clone()))
            .collect();
        assert!(
            addresses.contains(&(MachineAddressType::InternalIP, ip.clone()))
                && addresses.contains(&(MachineAddressType::Hostname, name.to_string())),
            "{name}: {addresses:?}, container at {ip}"
        );
        let id = format!("kind://{}/kind/{name}", self.core.name);
        assert_eq!(km.spec.provider_id.as_deref(), Some(id.as_str()));

        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("node");
        match self.nodes.create(&Default::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("register Node {name}: {e}"),
        }
        node_has_provider_id(&self.nodes, name, &id, Duration::from_secs(60)).await;
    }

    /// Waits until the load balancer's servers are exactly `expected` (name, weight).
    async fn wait_backends(&self, expected: &[(&str, &str)]) {
        capkind_test::docker::wait_lb_backends(&self.lb, expected, READY_TIMEOUT).await;
    }

    /// A TLS request through the load balancer reaches a control-plane node's listener.
    async fn reachable_through_the_load_balancer(&self) {
        let port = engine()
            .await
            .inspect(&self.lb)
            .await
            .expect("inspect")
            .expect("load balancer")
            .published[&6443][0]
            .host_port;
        capkind_test::http::wait_for_https_body(
            &format!("https://127.0.0.1:{port}/"),
            "s_server",
            Duration::from_secs(60),
        )
        .await;
    }

    /// The names of the cluster's containers.
    async fn containers(&self) -> Vec<String> {
        let mut names = engine()
            .await
            .list(&[("io.x-k8s.kind.cluster", self.core.name.as_str())])
            .await
            .expect("list containers");
        names.sort();
        names
    }
}

/// Docker's container creations for one cluster, recorded live (the engine keeps only its
/// last few hundred events, and exec events crowd them out).
struct Creations {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Creations {
    fn record(cluster: &str) -> Self {
        let file = std::env::temp_dir().join(format!("{cluster}-creations"));
        let out = std::fs::File::create(&file).expect("events file");
        let child = std::process::Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--filter",
                &format!("label=io.x-k8s.kind.cluster={cluster}"),
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(out)
            .spawn()
            .expect("docker events");
        Self { child, file }
    }

    /// How many times each container was created.
    fn counts(mut self) -> BTreeMap<String, usize> {
        std::thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.file).expect("events");
        let _ = std::fs::remove_file(&self.file);
        let mut counts = BTreeMap::new();
        for name in text.lines() {
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
        counts
    }
}

async fn lifecycle(chaos: Option<u64>) {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let workload = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("the workload cluster's API server");
    let supervisor = Supervisor::start(&ns, chaos);

    let name = names::unique("e2e");
    let network = names::unique("net");
    let creations = Creations::record(&name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let core = CoreCluster::create(&client, &ns, &name, kind_spec(&network), machine_spec())
        .await
        .expect("create the cluster");
    let l = Lifecycle {
        machines: Api::namespaced(client.clone(), &ns),
        nodes: Api::all(workload.client().await),
        network,
        lb: format!("{name}-lb"),
        core,
    };
    let core = &l.core;
    core.infrastructure_ready(READY_TIMEOUT).await;
    let kubeconfig = std::fs::read_to_string(workload.kubeconfig()).expect("kubeconfig");
    core.workload_kubeconfig(&kubeconfig)
        .await
        .expect("kubeconfig Secret");

    // One control plane, then two workers once it is initialized.
    let cp0 = core
        .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
        .await
        .expect("control-plane machine");
    l.check_machine(&cp0, Role::ControlPlane).await;
    core.control_plane_initialized().await;
    let mut workers = vec![];
    for _ in 0..2 {
        workers.push(
            core.add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
                .await
                .expect("worker machine"),
        );
    }
    for w in &workers {
        l.check_machine(w, Role::Worker).await;
    }
    l.wait_backends(&[(&cp0, "100")]).await;
    l.reachable_through_the_load_balancer().await;
    let mut expected = vec![l.lb.clone(), cp0.clone()];
    expected.extend(workers.iter().cloned());
    expected.sort();
    assert_eq!(l.containers().await, expected);

    // Scale the control plane to three.
    let cp1 = core
        .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
        .await
        .expect("cp1");
    let cp2 = core
        .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
        .await
        .expect("cp2");
    l.check_machine(&cp1, Role::ControlPlane).await;
    l.check_machine(&cp2, Role::ControlPlane).await;
    l.wait_backends(&[(&cp0, "100"), (&cp1, "100"), (&cp2, "100")])
        .await;

    // And back to one, oldest first as the control plane provider does: a Machine being deleted
    // drains (weight 0) while its KindMachine is still there, then leaves the load balancer.
    for (gone, left) in [(&cp0, vec![&cp1, &cp2]), (&cp1, vec![&cp2])] {
        core.start_deleting_machine(gone)
            .await
            .expect("delete Machine");
        let mut draining = vec![(gone.as_str(), "0")];
        draining.extend(left.iter().map(|m| (m.as_str(), "100")));
        l.wait_backends(&draining).await;
        core.finish_deleting_machine(gone)
            .await
            .expect("delete KindMachine");
        let remaining: Vec<(&str, &str)> = left.iter().map(|m| (m.as_str(), "100")).collect();
        l.wait_backends(&remaining).await;
        assert!(
            engine()
                .await
                .inspect(gone)
                .await
                .expect("inspect")
                .is_none(),
            "container {gone} left behind"
        );
    }
    l.reachable_through_the_load_balancer().await;
    let mut expected = vec![l.lb.clone(), cp2.clone()];
    expected.extend(workers.iter().cloned());
    expected.sort();
    assert_eq!(l.containers().await, expected);

    // Remember the volumes, then delete the Cluster.
    let docker = engine().await;
    let mut volumes = vec![];
    for c in l.containers().await {
        volumes.extend(
            docker
                .inspect(&c)
                .await
                .expect("inspect")
                .expect("container")
                .volume_names,
        );
    }
    core.delete().await.expect("delete the cluster");
    let (restarts, seen) = supervisor.finish().await;

    assert!(
        l.containers().await.is_empty(),
        "containers left behind: {:?}",
        l.containers().await
    );
    capkind_test::docker::assert_volumes_gone(&volumes);
    assert!(
        !capkind_test::docker::network_exists(&l.network),
        "network {} left behind",
        l.network
    );
    let left: Vec<KindMachine> = l
        .machines
        .list(&Default::default())
        .await
        .expect("list")
        .items;
    assert!(left.is_empty(), "KindMachines left: {left:?}");
    assert!(
        core.kind_cluster().await.is_err(),
        "the KindCluster is still there"
    );

    // Exactly one container was ever created for the load balancer and for each machine.
    let created = creations.counts();
    let mut all = vec![l.lb.clone(), cp0, cp1, cp2];
    all.extend(workers);
    let expected: BTreeMap<String, usize> = all.into_iter().map(|n| (n, 1)).collect();
    assert_eq!(created, expected, "containers created per name");
    if let Some(seed) = chaos {
        eprintln!("seed {seed}: the manager was killed and restarted {restarts} times");
        assert!(restarts >= 5, "only {restarts} restarts: not much chaos");
    }

    // A healthy lifecycle, killed managers included, is a quiet one.
    assert_eq!(warnings(&client, &ns).await, [], "Warning events");
    assert_eq!(
        seen.reconcile_errors, 0.0,
        "reconcile errors in the metrics"
    );
    let problems: Vec<String> = seen.logs.iter().flat_map(|l| log_problems(l)).collect();
    assert_eq!(
        problems,
        Vec::<String>::new(),
        "WARN or ERROR lines in the manager's logs"
    );
}

#[tokio::test]
async fn cluster_lifecycle() {
    lifecycle(None).await;
}

#[tokio::test]
async fn cluster_lifecycle_with_the_manager_killed_at_random_points() {
    let seed = std::env::var("CAPKIND_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .subsec_nanos() as u64
        });
    eprintln!("CAPKIND_E2E_SEED={seed}");
    lifecycle(Some(seed)).await;
}
