//! A whole cluster lifecycle, driven the way Cluster API core drives an infrastructure provider
//! (test/src/core.rs), against the real manager binary, the real API server, Docker and haproxy,
//! with a second API server as the workload cluster: one control-plane and two worker machines,
//! the control plane scaled to three and back to one, then the Cluster deleted. Control planes
//! stand in for kubeadm with a TLS listener on 6443 run by systemd (back after a node restart, as
//! static pods are); every bootstrap counts its runs in a file on its node.
//!
//! Run with a manager that stays up; again with the webhooks on (an API server of its own whose
//! CRDs convert through the manager), once with the objects written as v1beta2 and once as
//! v1beta1; and once under chaos: faults injected one after the
//! other, each after a random delay, in kinds drawn from shuffled bags of two manager kills
//! (SIGKILL, then a new process), one `docker restart` (the load balancer, or a node whose
//! bootstrap succeeded: one restarted mid-bootstrap is reported and never bootstrapped again,
//! which kindmachine.rs covers) and one cut of the manager's Docker socket (through a proxy) for
//! 1 to 6 s. At its steady state the cluster waits, through faults, until each kind came up
//! often enough (at least 5 kills, 3 restarts with the load balancer and a node among them, and
//! 3 cuts), then is checked again and deleted.
//!
//! The outcome must be the same in both runs: every machine ready with its address, provider ID
//! and Node, the load balancer's backends and a control plane answering through it, exactly one
//! container ever created per machine and the same one throughout, each node's bootstrap run
//! exactly once (checked before a node is deleted), nothing left after the deletion, and no
//! Warning event, reconcile error or WARN line but those of the Docker engine being unreachable
//! while its socket is cut. The chaos run prints each fault and a summary line with the seed;
//! CAPKIND_E2E_SEED replays the same kinds and delays (which container a restart picks depends
//! on which are safe at that moment). When it fails, the managers' logs are kept in one file.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::{KindMachine, MachineAddressType};
use capkind_test::core::{CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::{SocketProxy, engine, lb_backends_now};
use capkind_test::fixtures::{
    is_ready, kind_spec, kindmachine_condition, machine_spec, node_has_provider_id,
};
use capkind_test::process::ManagerProcess;
use capkind_test::signals::{log_problems, warnings};
use capkind_test::webhooks::{self, Certs};
use capkind_test::{ApiServer, names, shared, wait};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The node file every machine's bootstrap appends a line to each time it runs.
const RUNS: &str = "/var/lib/capkind-test-runs";

/// Bootstrap data for a control-plane node that stands in for kubeadm as core's
/// `CONTROL_PLANE_BOOTSTRAP` does (openssl's s_server answering TLS on 6443, then the sentinel),
/// with the listener a systemd service, so that it is back after a restart of the node as a
/// kubelet's static pods are (the bootstrap does not run again).
const CONTROL_PLANE_BOOTSTRAP: &str = r#"#cloud-config
write_files:
- path: /etc/systemd/system/capkind-demo-apiserver.service
  content: |
    [Unit]
    Description=Stands in for the API server
    [Service]
    ExecStart=/usr/bin/openssl s_server -accept 6443 -cert /etc/capkind-demo/c.pem -key /etc/capkind-demo/k.pem -www
    StandardInput=null
    Restart=always
    [Install]
    WantedBy=multi-user.target
runcmd:
- [sh, -c, 'mkdir -p /etc/capkind-demo && openssl req -x509 -newkey rsa:2048 -nodes -keyout /etc/capkind-demo/k.pem -out /etc/capkind-demo/c.pem -subj /CN=node -days 1 2>/dev/null']
- systemctl enable --now capkind-demo-apiserver.service
- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete
"#;

/// `bootstrap` (cloud-config with `runcmd`) with a first command that counts its runs in
/// [`RUNS`].
fn counting(bootstrap: &str) -> String {
    let counted = bootstrap.replacen("runcmd:\n", &format!("runcmd:\n- echo run >> {RUNS}\n"), 1);
    assert_ne!(counted, bootstrap, "bootstrap data without runcmd");
    counted
}

/// The manager binary, and the faults injected around it when `chaos` is set.
struct Supervisor {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    seen: Arc<Mutex<Seen>>,
    handle: tokio::task::JoinHandle<()>,
}

/// What the manager processes showed of their health, each read just before its end.
#[derive(Clone, Default)]
struct Seen {
    logs: Vec<std::path::PathBuf>,
    /// Failed reconciles by their metric labels (controller and reason).
    reconcile_errors: BTreeMap<String, f64>,
}

impl Seen {
    fn add_reconcile_errors(&mut self, manager: &ManagerProcess) {
        let metrics = manager.metrics();
        for line in metrics.lines() {
            let Some((labels, value)) = line
                .strip_prefix("capkind_reconcile_errors_total{")
                .and_then(|rest| rest.split_once("} "))
            else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            if value > 0.0 {
                *self.reconcile_errors.entry(labels.to_string()).or_default() += value;
            }
        }
    }
}

/// The faults injected, for the summary and the minimums.
#[derive(Clone, Debug, Default)]
struct Tally {
    kills: u32,
    lb_restarts: u32,
    node_restarts: u32,
    cuts: u32,
    cut_time: Duration,
}

impl Tally {
    fn line(&self, seed: u64) -> String {
        format!(
            "seed {seed}: {} manager kills, {} container restarts ({} load balancer, {} nodes), \
             {} socket cuts (total {:.1} s)",
            self.kills,
            self.lb_restarts + self.node_restarts,
            self.lb_restarts,
            self.node_restarts,
            self.cuts,
            self.cut_time.as_secs_f64()
        )
    }

    /// What falls short of the minimum amount of chaos, if anything.
    fn shortfall(&self) -> Option<String> {
        let restarts = self.lb_restarts + self.node_restarts;
        let short = self.kills < 5
            || restarts < 3
            || self.lb_restarts < 1
            || self.node_restarts < 1
            || self.cuts < 3;
        short.then(|| {
            format!(
                "not much chaos: {} kills (at least 5), {restarts} container restarts (at least \
                 3, one of the load balancer and one of a node), {} socket cuts (at least 3)",
                self.kills, self.cuts
            )
        })
    }
}

/// Prints the summary line when dropped: at the end of a run, or while a failure unwinds,
/// then with the managers' logs kept in one file (the environment's directory goes with the
/// test process).
struct Summary {
    seed: u64,
    tally: Arc<Mutex<Tally>>,
    seen: Arc<Mutex<Seen>>,
    outcome: Option<String>,
}

impl Drop for Summary {
    fn drop(&mut self) {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        let outcome = match &self.outcome {
            Some(o) => o.clone(),
            None => format!("failed (see the panic above); {}", self.keep_logs()),
        };
        eprintln!("{}; outcome: {outcome}", tally.line(self.seed));
    }
}

impl Summary {
    /// Waits until every kind of fault came up often enough.
    async fn wait_for_enough_chaos(&self) {
        wait::until("enough faults", Duration::from_secs(180), || async {
            self.tally
                .lock()
                .expect("tally")
                .shortfall()
                .map_or(Ok(()), Err)
        })
        .await;
    }

    /// Copies every manager's log, in start order, to one file; where it is.
    fn keep_logs(&self) -> String {
        let logs = self.seen.lock().map(|s| s.logs.clone()).unwrap_or_default();
        let mut all = String::new();
        for log in &logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            all.push_str(&format!("==> {} <==\n{text}", log.display()));
        }
        let kept = std::env::temp_dir().join(format!("capkind-e2e-seed-{}.log", self.seed));
        match std::fs::write(&kept, all) {
            Ok(()) => format!("the managers' logs are in {}", kept.display()),
            Err(e) => format!("the managers' logs could not be kept: {e}"),
        }
    }
}

/// A small deterministic generator (xorshift), so that a seed replays the same points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// One fault of the chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// SIGKILL the manager, then start a new one.
    KillManager,
    /// `docker restart` the load balancer or a node whose bootstrap succeeded.
    RestartContainer,
    /// Cut the manager's Docker socket for 1 to 6 s.
    CutSocket,
}

/// The faults in the order a seed gives them: shuffled bags of two manager kills, one container
/// restart and one socket cut, so that every kind comes up at a steady rate whatever the seed.
struct Schedule {
    rng: Rng,
    bag: Vec<Fault>,
}

impl Schedule {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed | 1),
            bag: vec![],
        }
    }

    fn next_fault(&mut self) -> Fault {
        if self.bag.is_empty() {
            self.bag = vec![
                Fault::KillManager,
                Fault::KillManager,
                Fault::RestartContainer,
                Fault::CutSocket,
            ];
            for i in (1..self.bag.len()).rev() {
                let j = self.rng.between(0, i as u64 + 1) as usize;
                self.bag.swap(i, j);
            }
        }
        self.bag.pop().expect("a full bag")
    }
}

/// What the chaos run may restart: the cluster's containers.
struct Target {
    cluster: String,
    lb: String,
    machines: Api<KindMachine>,
}

impl Target {
    /// The container to restart for the random number `pick`, if one is safe to restart now:
    /// the load balancer or a node whose KindMachine finished its bootstrap and is not being
    /// deleted, each side with even odds when both are there.
    async fn pick_to_restart(&self, pick: u64) -> Option<String> {
        let mut names = engine()
            .await
            .list(&[("io.x-k8s.kind.cluster", self.cluster.as_str())])
            .await
            .expect("list containers");
        names.sort();
        let (mut lb, mut nodes) = (None, vec![]);
        for name in names {
            if name == self.lb {
                lb = Some(name);
            } else if let Ok(Some(km)) = self.machines.get_opt(&name).await
                && bootstrapped(&km)
            {
                nodes.push(name);
            }
        }
        let node =
            (!nodes.is_empty()).then(|| nodes[(pick / 2 % nodes.len() as u64) as usize].clone());
        match (lb, node) {
            (Some(lb), Some(node)) => Some(if pick.is_multiple_of(2) { lb } else { node }),
            (lb, node) => lb.or(node),
        }
    }
}

/// Whether a node can be restarted without interrupting its bootstrap: the bootstrap succeeded,
/// the provider ID is set, and the KindMachine is not being deleted.
fn bootstrapped(km: &KindMachine) -> bool {
    km.metadata.deletion_timestamp.is_none()
        && !km.spec.provider_id.is_empty()
        && kindmachine_condition(km, "BootstrapExecSucceeded").is_some_and(|c| c.status == "True")
}

/// Waits `delay` (until stopped when `None`), failing the test if the manager exits by itself;
/// false when the run stopped before.
async fn watch(manager: &mut ManagerProcess, stop: &AtomicBool, delay: Option<Duration>) -> bool {
    let started = Instant::now();
    while delay.is_none_or(|d| started.elapsed() < d) {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        if let Ok(Some(status)) = manager.child.try_wait() {
            panic!(
                "the manager exited by itself ({status}):\n{}",
                manager.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The faults of one run and what they act on.
struct Chaos {
    schedule: Schedule,
    proxy: SocketProxy,
    target: Target,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
}

impl Chaos {
    fn log(&self, what: &str) {
        eprintln!(
            "chaos +{:.1}s ({}): {what}",
            self.started.elapsed().as_secs_f64(),
            chrono::Utc::now().format("%H:%M:%S%.3fZ")
        );
    }

    /// Injects faults, each after a random delay, until the manager's kill is due (true) or
    /// the run stops (false).
    async fn until_kill(&mut self, manager: &mut ManagerProcess, stop: &AtomicBool) -> bool {
        loop {
            let delay = Duration::from_millis(self.schedule.rng.between(200, 3000));
            if !watch(manager, stop, Some(delay)).await {
                return false;
            }
            match self.schedule.next_fault() {
                Fault::KillManager => {
                    self.log("kill the manager");
                    return true;
                }
                Fault::RestartContainer => self.restart_container().await,
                Fault::CutSocket => {
                    if !self.cut_socket(manager, stop).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Restarts one of the containers that are safe to restart, picked at random.
    async fn restart_container(&mut self) {
        let pick = self.schedule.rng.next();
        let Some(name) = self.target.pick_to_restart(pick).await else {
            self.log("nothing safe to restart yet");
            return;
        };
        self.log(&format!("docker restart {name}"));
        let restart = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("docker")
                    .args(["restart", "-t", "2", &name])
                    .output()
                    .expect("docker restart")
            })
        };
        let out = restart.await.expect("join");
        if !out.status.success() {
            // The lifecycle's deletions may take it first (picked before, removed meanwhile).
            let stderr = String::from_utf8_lossy(&out.stderr);
            let container = engine().await.inspect(&name).await.expect("inspect");
            let removed = stderr.contains("marked for removal")
                || container.is_none_or(|c| c.state == "removing");
            assert!(removed, "docker restart {name}: {stderr}");
            self.log(&format!("{name} is being removed: {}", stderr.trim()));
            return;
        }
        let mut tally = self.tally.lock().expect("tally");
        if name == self.target.lb {
            tally.lb_restarts += 1;
        } else {
            tally.node_restarts += 1;
        }
    }

    /// Cuts the manager's Docker socket for 1 to 6 s, shorter when the run stops meanwhile
    /// (false then).
    async fn cut_socket(&mut self, manager: &mut ManagerProcess, stop: &AtomicBool) -> bool {
        let cut = Duration::from_millis(self.schedule.rng.between(1000, 6001));
        self.log(&format!(
            "cut the Docker socket for {:.1}s",
            cut.as_secs_f64()
        ));
        let started = Instant::now();
        self.proxy.cut();
        let whole = watch(manager, stop, Some(cut)).await;
        self.proxy.restore();
        let mut tally = self.tally.lock().expect("tally");
        tally.cuts += 1;
        tally.cut_time += started.elapsed();
        whole
    }
}

impl Supervisor {
    /// Runs the manager for `namespace`; with `chaos` (a seed), faults are injected into it and
    /// into the containers of `target`.
    fn start(setup: &Setup, namespace: &str, chaos: Option<u64>, target: Target) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut args = vec!["--namespace".to_string(), namespace.to_string()];
        args.extend(setup.manager_args.iter().cloned());
        let server = setup.server;
        let chaos = chaos.map(|seed| {
            let proxy = SocketProxy::start(server.dir());
            args.push(format!("--docker-host=unix://{}", proxy.path.display()));
            Chaos {
                schedule: Schedule::new(seed),
                proxy,
                target,
                tally: tally.clone(),
                started: Instant::now(),
            }
        });
        let handle = tokio::spawn(supervise(
            server,
            args,
            chaos,
            stop.clone(),
            tally.clone(),
            seen.clone(),
        ));
        Self {
            stop,
            tally,
            seen,
            handle,
        }
    }

    /// Stops the manager (and the chaos); the faults injected, and what the processes showed.
    async fn finish(self) -> (Tally, Seen) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("the supervisor panicked");
        let seen = self.seen.lock().expect("seen").clone();
        let tally = self.tally.lock().expect("tally").clone();
        (tally, seen)
    }
}

/// The supervisor's task: a manager process at a time, each killed when the chaos says so or
/// when the run stops.
async fn supervise(
    server: &'static ApiServer,
    args: Vec<String>,
    mut chaos: Option<Chaos>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    seen: Arc<Mutex<Seen>>,
) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    loop {
        let mut manager = ManagerProcess::start(server, &args);
        seen.lock().expect("seen").logs.push(manager.log.clone());
        let kill_due = match chaos.as_mut() {
            Some(chaos) => chaos.until_kill(&mut manager, &stop).await,
            None => watch(&mut manager, &stop, None).await,
        };
        seen.lock().expect("seen").add_reconcile_errors(&manager);
        manager.signal("KILL");
        manager.wait_exit(Duration::from_secs(10), "SIGKILL").await;
        if !kill_due {
            return;
        }
        tally.lock().expect("tally").kills += 1;
    }
}

struct Lifecycle {
    core: CoreCluster,
    machines: Api<KindMachine>,
    nodes: Api<Node>,
    network: String,
    lb: String,
    /// The ID of each container when first seen: a container replaced under its name counts
    /// as created twice.
    ids: Mutex<BTreeMap<String, String>>,
}

impl Lifecycle {
    /// Everything a user sees of a ready machine: one running container with kind's labels,
    /// its address in the status, its provider ID, and the provider ID on its workload Node
    /// (registered here as its kubelet would). Waits through a restart of its container.
    async fn check_machine(&self, name: &str, role: Role) {
        let what = format!("KindMachine {name} ready, its container running");
        wait::until(&what, READY_TIMEOUT, || self.machine_as_seen(name, role)).await;
        let id = format!("kind://{}/kind/{name}", self.core.name);
        let node: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("node");
        match self.nodes.create(&Default::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("register Node {name}: {e}"),
        }
        node_has_provider_id(&self.nodes, name, &id, Duration::from_secs(60)).await;
    }

    /// Checks the machine `name` once it is ready and its container runs (what is missing yet
    /// otherwise).
    async fn machine_as_seen(&self, name: &str, role: Role) -> Result<(), String> {
        let km = self.machines.get(name).await.map_err(|e| e.to_string())?;
        let provisioned =
            kindmachine_condition(&km, "ContainerProvisioned").is_some_and(|c| c.status == "True");
        if !is_ready(&km) || !provisioned {
            return Err(format!("{:?}", km.status.as_ref().map(|s| &s.conditions)));
        }
        let c = engine()
            .await
            .inspect(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no container {name}"))?;
        if !c.running {
            return Err(format!("container {name} is {}", c.state));
        }
        self.remember(name, &c.id);
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
        assert_eq!(
            Some(km.spec.provider_id.as_str()).filter(|p| !p.is_empty()),
            Some(id.as_str())
        );
        Ok(())
    }

    /// Remembers the container `name` by its ID, failing the test if it was another before.
    fn remember(&self, name: &str, id: &str) {
        let mut ids = self.ids.lock().expect("ids");
        let first = ids
            .entry(name.to_string())
            .or_insert_with(|| id.to_string());
        assert_eq!(first, id, "container {name} was replaced");
    }

    /// The cluster's containers are those seen so far, each still the same container.
    async fn same_containers(&self) {
        let docker = engine().await;
        for name in self.containers().await {
            let c = docker.inspect(&name).await.expect("inspect");
            let id = c.unwrap_or_else(|| panic!("container {name} gone")).id;
            let ids = self.ids.lock().expect("ids");
            let known = ids.get(&name);
            assert!(known.is_some(), "container {name} was never checked");
            assert_eq!(known, Some(&id), "container {name} was replaced");
        }
    }

    /// The node `name` ran its bootstrap exactly once (read once it runs, through restarts).
    async fn bootstrapped_once(&self, name: &str) {
        let what = format!("{RUNS} read on {name}");
        let runs = wait::until(&what, Duration::from_secs(60), || async {
            let out = engine()
                .await
                .exec(name, &["cat", RUNS], None)
                .await
                .map_err(|e| e.to_string())?;
            if out.exit_code == 0 {
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            } else {
                Err(format!(
                    "exit {}: {}",
                    out.exit_code,
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .await;
        assert_eq!(runs, "run", "bootstrap runs on {name}");
    }

    /// Waits until the load balancer's servers are exactly `expected` (name, weight), reading
    /// them through restarts of the load balancer.
    async fn wait_backends(&self, expected: &[(&str, &str)]) {
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(n, w)| (n.to_string(), w.to_string()))
            .collect();
        wait::until("the load balancer's backends", READY_TIMEOUT, || async {
            let got = lb_backends_now(&self.lb).await?;
            if got == expected {
                Ok(())
            } else {
                Err(format!("{got:?}, expected {expected:?}"))
            }
        })
        .await;
    }

    /// A TLS request through the load balancer reaches a control-plane node's listener (at
    /// the port published now: a restart may publish another).
    async fn reachable_through_the_load_balancer(&self) {
        let what = "a control plane answering through the load balancer";
        wait::until(what, Duration::from_secs(60), || async {
            let lb = engine()
                .await
                .inspect(&self.lb)
                .await
                .map_err(|e| e.to_string())?
                .expect("load balancer");
            let port = lb
                .published
                .get(&6443)
                .and_then(|p| p.first())
                .map(|p| p.host_port)
                .ok_or_else(|| format!("6443 not published ({})", lb.state))?;
            let out = std::process::Command::new("curl")
                .args([
                    "-sk",
                    "--max-time",
                    "3",
                    &format!("https://127.0.0.1:{port}/"),
                ])
                .output()
                .map_err(|e| format!("run curl: {e}"))?;
            let body = String::from_utf8_lossy(&out.stdout);
            if body.contains("s_server") {
                Ok(())
            } else {
                Err(format!("curl exit {:?}: {body}", out.status.code()))
            }
        })
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

/// Where a lifecycle runs: the API server, the manager's extra flags, and the version of
/// capkind's API core's stand-in writes the objects in.
struct Setup {
    server: &'static ApiServer,
    manager_args: Vec<String>,
    infra_version: &'static str,
    /// Webhooks to point the API server at once the manager runs: (port, CA).
    webhooks: Option<(u16, String)>,
}

impl Setup {
    /// The shared API server, no webhooks, v1beta2 objects.
    fn plain() -> Self {
        Self {
            server: shared(),
            manager_args: vec![],
            infra_version: "v1beta2",
            webhooks: None,
        }
    }

    /// An API server of its own whose CRDs convert through the manager's webhook and whose
    /// admission webhooks are the shipped ones, with objects written in `infra_version`.
    fn with_webhooks(infra_version: &'static str) -> Self {
        static SERVER: OnceLock<(ApiServer, Certs)> = OnceLock::new();
        let (server, certs) = SERVER.get_or_init(|| {
            let server = ApiServer::start().expect("the webhook run's API server");
            let certs = Certs::new(&server.dir().join("webhook-certs"));
            (server, certs)
        });
        let port = capkind_test::http::free_port();
        Self {
            server,
            manager_args: vec![
                format!("--webhook-port={port}"),
                "--webhook-host=127.0.0.1".into(),
                format!("--webhook-cert-dir={}", certs.dir().display()),
            ],
            infra_version,
            webhooks: Some((port, certs.ca_pem())),
        }
    }
}

async fn lifecycle(chaos: Option<u64>, setup: Setup) {
    let server = setup.server;
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let workload = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("the workload cluster's API server");
    let name = names::unique("e2e");
    let network = names::unique("net");
    let machines: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    let target = Target {
        cluster: name.clone(),
        lb: format!("{name}-lb"),
        machines: machines.clone(),
    };
    let supervisor = Supervisor::start(&setup, &ns, chaos, target);
    if let Some((port, ca)) = &setup.webhooks {
        webhooks::enable(&client, *port, ca)
            .await
            .expect("point the API server at the manager's webhooks");
    }
    let summary = chaos.map(|seed| Summary {
        seed,
        tally: supervisor.tally.clone(),
        seen: supervisor.seen.clone(),
        outcome: None,
    });

    let creations = Creations::record(&name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let core = CoreCluster::create_in(
        setup.infra_version,
        &client,
        &ns,
        &name,
        kind_spec(&network),
        machine_spec(),
    )
    .await
    .expect("create the cluster");
    let l = Lifecycle {
        machines,
        nodes: Api::all(workload.client().await),
        network,
        lb: format!("{name}-lb"),
        core,
        ids: Mutex::default(),
    };
    let core = &l.core;
    core.infrastructure_ready(READY_TIMEOUT).await;
    let lb = engine().await.inspect(&l.lb).await.expect("inspect");
    l.remember(&l.lb, &lb.expect("load balancer").id);
    let kubeconfig = std::fs::read_to_string(workload.kubeconfig()).expect("kubeconfig");
    core.workload_kubeconfig(&kubeconfig)
        .await
        .expect("kubeconfig Secret");

    // One control plane, then two workers once it is initialized.
    let (control_plane, worker) = (
        counting(CONTROL_PLANE_BOOTSTRAP),
        counting(TRIVIAL_BOOTSTRAP),
    );
    let cp0 = core
        .add_machine(Role::ControlPlane, &control_plane)
        .await
        .expect("control-plane machine");
    l.check_machine(&cp0, Role::ControlPlane).await;
    core.control_plane_initialized().await;
    let mut workers = vec![];
    for _ in 0..2 {
        workers.push(
            core.add_machine(Role::Worker, &worker)
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
        .add_machine(Role::ControlPlane, &control_plane)
        .await
        .expect("cp1");
    let cp2 = core
        .add_machine(Role::ControlPlane, &control_plane)
        .await
        .expect("cp2");
    l.check_machine(&cp1, Role::ControlPlane).await;
    l.check_machine(&cp2, Role::ControlPlane).await;
    l.wait_backends(&[(&cp0, "100"), (&cp1, "100"), (&cp2, "100")])
        .await;

    // And back to one, oldest first as the control plane provider does: a Machine being deleted
    // drains (weight 0) while its KindMachine is still there, then leaves the load balancer.
    for (gone, left) in [(&cp0, vec![&cp1, &cp2]), (&cp1, vec![&cp2])] {
        l.same_containers().await;
        l.bootstrapped_once(gone).await;
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
    // Under chaos the cluster stays, through faults, until each kind came up often enough;
    // then it is as it was.
    if let Some(summary) = &summary {
        summary.wait_for_enough_chaos().await;
        l.check_machine(&cp2, Role::ControlPlane).await;
        for w in &workers {
            l.check_machine(w, Role::Worker).await;
        }
        l.wait_backends(&[(&cp2, "100")]).await;
    }
    l.reachable_through_the_load_balancer().await;
    let mut expected = vec![l.lb.clone(), cp2.clone()];
    expected.extend(workers.iter().cloned());
    expected.sort();
    assert_eq!(l.containers().await, expected);
    l.same_containers().await;
    for node in std::iter::once(&cp2).chain(&workers) {
        l.bootstrapped_once(node).await;
    }

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
    let (tally, seen) = supervisor.finish().await;

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

    // A healthy lifecycle, faults included, is a quiet one: under chaos, but for the Docker
    // engine being unreachable while its socket is cut.
    let tolerated = chaos.is_some();
    let (events, other_events) = split(tolerated, warnings(&client, &ns).await, |w| {
        w.reason == "DockerUnavailable"
    });
    let errors = seen.reconcile_errors.into_iter().collect();
    let (errors, other_errors) = split(tolerated, errors, |e: &(String, f64)| {
        e.0.contains("reason=\"DockerUnavailable\"")
    });
    let problems: Vec<String> = seen.logs.iter().flat_map(|l| log_problems(l)).collect();
    let (lines, other_lines) = split(tolerated, problems, |l| {
        l.contains("DockerUnavailable") || l.contains("the Docker engine does not answer")
    });
    assert!(
        other_events.is_empty() && other_errors.is_empty() && other_lines.is_empty(),
        "Warning events: {other_events:#?}\nreconcile errors in the metrics: {other_errors:?}\n\
         WARN or ERROR lines in the manager's logs: {other_lines:#?}"
    );

    if let Some(mut summary) = summary {
        let errors: f64 = errors.iter().map(|e| e.1).sum();
        let shortfall = tally.shortfall();
        summary.outcome = Some(format!(
            "{}every machine ready, one container per machine, each bootstrap ran once, all \
             removed; while the socket was cut: {errors} DockerUnavailable reconcile errors, \
             {} Warning events, {} WARN lines",
            shortfall
                .as_ref()
                .map_or(String::new(), |s| format!("{s}; ")),
            events.len(),
            lines.len()
        ));
        drop(summary);
        assert!(shortfall.is_none(), "{}", shortfall.unwrap_or_default());
    }
}

/// Signs of trouble split into those `explained` by a fault (none when there were no
/// `faults`) and the others.
fn split<T>(faults: bool, items: Vec<T>, explained: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items
        .into_iter()
        .partition(|item| faults && explained(item))
}

#[tokio::test]
async fn cluster_lifecycle() {
    lifecycle(None, Setup::plain()).await;
}

/// The same lifecycle with the webhooks on, objects written as v1beta2 (the storage version)
/// and then as v1beta1 (converted by the manager on every read and write core makes).
/// Sequential: the two runs share an API server whose CRDs point at one manager at a time.
#[tokio::test]
async fn cluster_lifecycle_with_webhooks_in_both_api_versions() {
    for version in ["v1beta2", "v1beta1"] {
        eprintln!("lifecycle with webhooks, objects in {version}");
        lifecycle(None, Setup::with_webhooks(version)).await;
    }
}

/// Multi-threaded: the socket proxy keeps serving while the test blocks on a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    lifecycle(Some(seed), Setup::plain()).await;
}
