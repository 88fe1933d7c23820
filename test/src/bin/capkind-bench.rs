//! The provisioning benchmark (docs/performance.md; run it with `hack/bench.sh`).
//!
//! For each N (default 10, 50, 100; or the sizes given as arguments), on the real API server and
//! Docker engine:
//! - the floor: N node containers created, started, given the bootstrap files in one upload and
//!   bootstrapped with one attached exec, directly through the Docker API, all in parallel;
//! - the provider: the manager binary (started fresh, so its peak RSS belongs to this N) and N
//!   worker Machines with KindMachines and a trivial bootstrap, created in parallel the way
//!   Cluster API core creates them (test/src/core.rs), timed from each Machine's creation to its
//!   KindMachine being ready; Docker calls and API writes per machine come from the manager's
//!   own metrics;
//! - each size measured `--rounds` times (default 3), with the median ratios at the end;
//! - after the largest N, the steady state: a minute with every machine ready.
//!
//! With `--pool` (`hack/bench.sh --pool [sizes]`, default 20), the provider side is one
//! MachinePool and KindMachinePool at 0 replicas instead, scaled to N with core's MachinePool
//! controller played by test/src/core_pool.rs: timed from the scale to each instance's
//! KindMachine ready (p50) and to the KindMachinePool ready with N replicas (wall), against the
//! same floor; per instance, the manager's Docker calls and API writes (the pool's own included,
//! core's excluded as it is not the manager); then the scale back to 0, until every instance is
//! gone.
//!
//! With `--real` (`hack/bench.sh --real [rounds]`), only the real-cluster scenario ([`real`]):
//! a kubeadm cluster of one control plane and two workers, from the Cluster's creation to every
//! Node Ready, against a floor running the same kubeadm init and joins in containers of the same
//! spec with no controller; then the ready cluster's steady state.
//!
//! Figures are printed, not asserted; per-machine request counts, Docker latencies and phase
//! timestamps go to stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capkind::controllers::kindmachine::bootstrap;
use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::KindMachine;
use capkind_test::core::{CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::core_pool::CorePool;
use capkind_test::docker::{engine, images};
use capkind_test::fixtures::{kind_spec, machine_spec};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names, shared};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

const TIMEOUT: Duration = Duration::from_secs(900);

struct Latencies {
    p50: f64,
    p95: f64,
    wall: f64,
}

fn latencies(mut per_machine: Vec<f64>, wall: f64) -> Latencies {
    per_machine.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((per_machine.len() as f64 * q).ceil() as usize).saturating_sub(1);
        per_machine[i.min(per_machine.len() - 1)]
    };
    Latencies {
        p50: at(0.50),
        p95: at(0.95),
        wall,
    }
}

/// The floor for `n` machines: create, start, upload, exec, with no controller.
/// Waits for a quiet machine before `side` starts, and says how long that took on stderr.
async fn settled(side: &str, n: usize) {
    let (waited, busy) = cpu::settle().await;
    let how = if busy <= cpu::QUIET {
        "quiet"
    } else {
        "still busy"
    };
    eprintln!(
        "N={n}: {side} started after {waited:.1} s of settling ({how}: {:.0}% of the CPUs busy over the last second)",
        busy * 100.0
    );
}

async fn floor(n: usize) -> Latencies {
    let docker = engine().await;
    let network = names::unique("benchnet");
    docker.ensure_network(&network).await.expect("network");
    let mut janitor = capkind_test::docker::Janitor::default();
    janitor.track_network(&network);
    let plan = capkind::bootstrap::plan(Some("cloud-config"), TRIVIAL_BOOTSTRAP.as_bytes())
        .expect("bootstrap plan");
    let archive = bootstrap::archive(&plan).expect("archive");
    let run = format!(
        "mkdir -p /run/capkind /run/cluster-api && sh {} && test -f {}",
        bootstrap::script_path(),
        capkind::bootstrap::SENTINEL
    );
    let cluster = names::unique("floor");
    let names: Vec<String> = (0..n).map(|i| format!("{cluster}-{i}")).collect();
    let recorder = timeline::Recorder::start(&cluster);
    settled("floor", n).await;
    let cpu_before = cpu::sample();
    let started = Instant::now();
    let one = |name: String| {
        let (docker, network, archive, run, cluster) = (
            docker.clone(),
            network.clone(),
            archive.clone(),
            run.clone(),
            cluster.clone(),
        );
        async move {
            let t0 = Instant::now();
            let t0_unix = timeline::now();
            let mut spec = capkind_test::docker::worker_node_spec(&cluster, &name, &network);
            // A fixed address, as the provider gives every node (it must: a node comes back
            // on its address after a restart, whatever the order), picked the same way.
            spec.ipv4_address = docker.free_address(&network).await.expect("address");
            docker.create(&spec).await.expect("create");
            docker.start(&name).await.expect("start");
            let started = t0.elapsed().as_secs_f64();
            docker.upload(&name, "/", archive).await.expect("upload");
            let out = docker
                .exec(&name, &["sh", "-c", &run], None)
                .await
                .expect("exec");
            if out.exit_code != 0 {
                let state = docker
                    .exec(
                        &name,
                        &[
                            "sh",
                            "-c",
                            "systemctl is-system-running; cat /var/lib/capkind/state/*; ps -ef | head -30",
                        ],
                        None,
                    )
                    .await
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "the floor's bootstrap failed in {name}: exit {}, {}{}\n{state}",
                    out.exit_code,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            (
                (started, t0.elapsed().as_secs_f64()),
                (t0_unix, timeline::now()),
            )
        }
    };
    let phases = futures::future::join_all(names.iter().cloned().map(one)).await;
    let wall = started.elapsed().as_secs_f64();
    cpu::report("floor", n, &cpu_before, &cpu::sample());
    // Per machine: (running after, done after) and (start, end) on the Unix clock.
    type Pair = (f64, f64);
    let (durations, times): (Vec<Pair>, Vec<Pair>) = phases.into_iter().unzip();
    let seen = recorder.stop(&bootstrap::script_path());
    let ended = timeline::ended(&docker, &names).await;
    let rows: Vec<Vec<Option<f64>>> = names
        .iter()
        .zip(&times)
        .map(|(name, &(t0, done))| {
            let docker = seen.get(name).copied().unwrap_or_default();
            let mut row: Vec<Option<f64>> = docker.iter().map(|t| t.map(|t| t - t0)).collect();
            row.push(ended.get(name).map(|t| t - t0));
            row.push(Some(done - t0));
            row
        })
        .collect();
    timeline::report(
        "floor",
        n,
        &[
            "created", "started", "uploaded", "launched", "ended", "done",
        ],
        &rows,
    );
    let (mut running, per_machine): (Vec<f64>, Vec<f64>) = durations.into_iter().unzip();
    running.sort_by(f64::total_cmp);
    eprintln!(
        "N={n}: floor: container running after {:.2} s (median), {:.2} s (last)",
        running[running.len() / 2],
        running[running.len() - 1]
    );
    for name in &names {
        let _ = docker.remove(name).await;
    }
    drop(janitor);
    latencies(per_machine, wall)
}

/// Figures of one provider run.
struct Provider {
    latencies: Latencies,
    docker_calls: f64,
    api_writes: f64,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    delete_seconds: f64,
    steady: Option<Steady>,
}

struct Steady {
    minutes: f64,
    writes: f64,
    docker_calls: f64,
    reconciles: f64,
    rss_mib: f64,
}

/// Sums a metric's series whose line starts with `name` and contains every one of `having`.
fn sum(metrics: &str, name: &str, having: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| having.is_empty() || having.iter().any(|h| l.contains(h)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Counters {
    docker: f64,
    writes: f64,
    cpu: f64,
    reconciles: f64,
    /// Every series of the request counters, for the breakdown printed to stderr.
    series: HashMap<String, f64>,
}

/// The series of the manager's request counters, by their full line (name and labels).
fn request_series(metrics: &str) -> HashMap<String, f64> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("capkind_docker_requests_total{")
                || l.starts_with("rest_client_requests_total{")
                || l.starts_with("capkind_api_rate_limited_seconds_total ")
                || l.starts_with("capkind_docker_request_duration_seconds_sum{")
                || l.starts_with("capkind_docker_request_duration_seconds_count{")
        })
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Per machine: how each request counter grew between two readings, largest first.
fn breakdown(before: &Counters, after: &Counters, n: usize) -> String {
    let mut rows: Vec<(String, f64)> = after
        .series
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - before.series.get(k).unwrap_or(&0.0)) / n as f64,
            )
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.iter()
        .map(|(k, d)| format!("  {d:6.2}  {k}\n"))
        .collect()
}

/// CPU seconds (user and system) a process has used, from /proc (the metric
/// process_cpu_seconds_total counts whole seconds only).
fn cpu_seconds(pid: u32) -> f64 {
    cpu::process(pid).map_or(0.0, |(_, secs)| secs)
}

fn counters(manager: &ManagerProcess) -> Counters {
    let m = manager.metrics();
    Counters {
        docker: sum(&m, "capkind_docker_requests_total", &[]),
        writes: sum(
            &m,
            "rest_client_requests_total",
            &[
                "method=\"POST\"",
                "method=\"PUT\"",
                "method=\"PATCH\"",
                "method=\"DELETE\"",
            ],
        ),
        cpu: cpu_seconds(manager.child.id()),
        reconciles: sum(&m, "controller_runtime_reconcile_total", &[]),
        series: request_series(&m),
    }
}

/// A line of /proc/<pid>/status in MiB.
fn proc_status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What the provider side is asked for: N worker Machines created one by one, as a
/// MachineDeployment's MachineSet creates them, or one MachinePool scaled from 0 to N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Machines,
    Pool,
}

/// A fresh manager, and a cluster made ready as core makes it: infrastructure provisioned,
/// the workload kubeconfig stored, the control plane initialized.
struct Setup {
    client: kube::Client,
    ns: String,
    manager: ManagerProcess,
    core: CoreCluster,
}

async fn setup(workload: &ApiServer) -> Setup {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    // CAPKIND_BENCH_MANAGER_ARGS: more manager flags, to compare settings (space separated).
    let extra = std::env::var("CAPKIND_BENCH_MANAGER_ARGS").unwrap_or_default();
    let mut args = vec!["--namespace", ns.as_str()];
    args.extend(extra.split_whitespace());
    let manager = ManagerProcess::start(server, &args);
    capkind_test::wait::until("the manager ready", Duration::from_secs(60), || async {
        let r = capkind_test::http::get(manager.health_port, "/readyz");
        if capkind_test::http::is_ok(&r) {
            Ok(())
        } else {
            Err(r)
        }
    })
    .await;
    let core = CoreCluster::create(
        &client,
        &ns,
        &names::unique("bench"),
        kind_spec(&names::unique("net")),
        machine_spec(),
    )
    .await
    .expect("cluster");
    core.infrastructure_ready(Duration::from_secs(120)).await;
    let kubeconfig = std::fs::read_to_string(workload.kubeconfig()).expect("kubeconfig");
    core.workload_kubeconfig(&kubeconfig)
        .await
        .expect("kubeconfig");
    core.control_plane_initialized().await;
    Setup {
        client,
        ns,
        manager,
        core,
    }
}

/// Registers a workload Node, as the kubelet does while kubeadm runs, before the bootstrap ends.
async fn register_node(nodes: &Api<Node>, name: &str) {
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("node");
    nodes
        .create(&Default::default(), &node)
        .await
        .expect("Node");
}

/// When the benchmark's watch first saw each KindMachine (Unix seconds): the object, its
/// Machine as owner, its finalizer, its readiness.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    seen: Option<f64>,
    owned: Option<f64>,
    finalizer: Option<f64>,
    ready: Option<f64>,
}

/// The benchmark's watch on the namespace's KindMachines.
struct MachineWatch {
    marks: Arc<Mutex<HashMap<String, Marks>>>,
    ready_at: Arc<Mutex<HashMap<String, Instant>>>,
    /// The KindMachines that exist now.
    live: Arc<Mutex<std::collections::HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MachineWatch {
    /// Starts the watch; with `nodes`, registers each new KindMachine's workload Node (named
    /// after its container in `cluster`) when it first shows, since pool instances' names are
    /// only known then.
    fn start(client: &kube::Client, ns: &str, nodes: Option<(Api<Node>, String)>) -> Self {
        let marks: Arc<Mutex<HashMap<String, Marks>>> = Arc::default();
        let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let live: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let watch = (marks.clone(), ready_at.clone(), live.clone());
        let api: Api<KindMachine> = Api::namespaced(client.clone(), ns);
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                let km = match event {
                    watcher::Event::Apply(km) | watcher::Event::InitApply(km) => km,
                    watcher::Event::Delete(km) => {
                        live.lock().expect("lock").remove(&km.name_any());
                        continue;
                    }
                    _ => continue,
                };
                let name = km.name_any();
                live.lock().expect("lock").insert(name.clone());
                let mut all = marks.lock().expect("lock");
                let entry = all.entry(name.clone()).or_default();
                if entry.seen.is_none()
                    && let Some((nodes, cluster)) = &nodes
                {
                    let (nodes, node) =
                        (nodes.clone(), capkind::node::container_name(cluster, &name));
                    tokio::spawn(async move { register_node(&nodes, &node).await });
                }
                entry.seen.get_or_insert_with(timeline::now);
                if km.owner_references().iter().any(|o| o.kind == "Machine") {
                    entry.owned.get_or_insert_with(timeline::now);
                }
                if !km.finalizers().is_empty() {
                    entry.finalizer.get_or_insert_with(timeline::now);
                }
                if km.provisioned() {
                    entry.ready.get_or_insert_with(timeline::now);
                    ready_at
                        .lock()
                        .expect("lock")
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        });
        Self {
            marks: watch.0,
            ready_at: watch.1,
            live: watch.2,
            task,
        }
    }

    /// Waits until `n` KindMachines were seen ready; returns when each became ready.
    async fn ready(&self, n: usize, manager: &ManagerProcess) -> HashMap<String, Instant> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let ready = self.ready_at.lock().expect("lock").clone();
            if ready.len() >= n {
                return ready;
            }
            assert!(
                Instant::now() < deadline,
                "not every machine became ready within {TIMEOUT:?}:\n{}",
                manager.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no KindMachine is left.
    async fn gone(&self, manager: &ManagerProcess) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.live.lock().expect("lock").is_empty() {
            assert!(
                Instant::now() < deadline,
                "KindMachines left after {TIMEOUT:?}: {:?}\n{}",
                self.live.lock().expect("lock"),
                manager.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn marks(&self) -> HashMap<String, Marks> {
        self.marks.lock().expect("lock").clone()
    }
}

impl Drop for MachineWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One provider machine for the timeline: its KindMachine's name, its start (Unix seconds)
/// and the marks before Docker's, in the order of the names given to [`provider_timeline`].
struct Started {
    machine: String,
    t0: f64,
    lead: Vec<Option<f64>>,
}

/// Prints the provider's timeline: per machine the `lead` marks, Docker's phases, the
/// bootstrap's end (read from the nodes) and the ready mark, in seconds after its start.
async fn provider_timeline(
    n: usize,
    cluster: &str,
    lead: &[&str],
    machines: &[Started],
    docker_seen: &HashMap<String, [Option<f64>; 4]>,
    marks: &HashMap<String, Marks>,
) {
    let containers: Vec<String> = machines
        .iter()
        .map(|m| capkind::node::container_name(cluster, &m.machine))
        .collect();
    let ended = timeline::ended(&engine().await, &containers).await;
    let rows: Vec<Vec<Option<f64>>> = machines
        .iter()
        .zip(&containers)
        .map(|(m, container)| {
            let since = |t: Option<f64>| t.map(|t| t - m.t0);
            let docker = docker_seen.get(container).copied().unwrap_or_default();
            let mut row: Vec<Option<f64>> = m.lead.iter().map(|&t| since(t)).collect();
            row.extend(docker.iter().map(|&t| since(t)));
            row.push(since(ended.get(container).copied()));
            row.push(since(marks.get(&m.machine).and_then(|w| w.ready)));
            row
        })
        .collect();
    let mut names = lead.to_vec();
    names.extend([
        "created", "started", "uploaded", "launched", "ended", "ready",
    ]);
    timeline::report("capkind", n, &names, &rows);
}

/// The manager's figures once `n` machines are ready: its counters after the reconciles that
/// follow readiness (the Nodes' provider IDs), the steady state when asked, its peak RSS; the
/// request breakdown goes to stderr and its log is kept as `capkind-bench-manager-<tag>.log`.
struct Measured {
    after: Counters,
    steady: Option<Steady>,
    peak_rss_mib: f64,
}

async fn measure(
    manager: &ManagerProcess,
    n: usize,
    tag: &str,
    before: &Counters,
    steady: bool,
) -> Measured {
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = counters(manager);
    let pid = manager.child.id();
    eprintln!(
        "N={n}: {:.1} reconciles/machine; manager log kept in {}/capkind-bench-manager-{tag}.log",
        (after.reconciles - before.reconciles) / n as f64,
        std::env::temp_dir().display()
    );
    eprint!(
        "N={n}: requests per machine\n{}",
        breakdown(before, &after, n)
    );
    let steady = if steady {
        let minutes = 1.0;
        let start = counters(manager);
        tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0)).await;
        let end = counters(manager);
        Some(Steady {
            minutes,
            writes: (end.writes - start.writes) / minutes,
            docker_calls: (end.docker - start.docker) / minutes,
            reconciles: (end.reconciles - start.reconciles) / minutes,
            rss_mib: proc_status_mib(pid, "VmRSS:"),
        })
    } else {
        None
    };
    let kept = std::env::temp_dir().join(format!("capkind-bench-manager-{tag}.log"));
    let _ = std::fs::copy(&manager.log, &kept);
    let peak_rss_mib = proc_status_mib(pid, "VmHWM:");
    // The peak is one number; what the resident memory is made of now says where it is:
    // the heap (anonymous) or the binary's own pages (file-backed, shared, evictable).
    eprintln!(
        "N={n}: manager memory now: {:.1} MiB heap and stacks (RssAnon), {:.1} MiB of the binary and libraries (RssFile); peak RSS {peak_rss_mib:.1} MiB",
        proc_status_mib(pid, "RssAnon:"),
        proc_status_mib(pid, "RssFile:"),
    );
    Measured {
        peak_rss_mib,
        after,
        steady,
    }
}

impl Provider {
    /// The figures of `n` machines from their latencies, the counters before the first was
    /// asked for and what [`measure`] found; `delete_seconds` is the mode's way down.
    fn new(
        n: usize,
        latencies: Latencies,
        before: &Counters,
        m: Measured,
        delete_seconds: f64,
    ) -> Self {
        let nf = n as f64;
        Self {
            latencies,
            docker_calls: (m.after.docker - before.docker) / nf,
            api_writes: (m.after.writes - before.writes) / nf,
            peak_rss_mib: m.peak_rss_mib,
            cpu_seconds: m.after.cpu - before.cpu,
            delete_seconds,
            steady: m.steady,
        }
    }
}

async fn provider(mode: Mode, n: usize, workload: &ApiServer, steady: bool) -> Provider {
    match mode {
        Mode::Machines => machines(n, workload, steady).await,
        Mode::Pool => pool(n, workload, steady).await,
    }
}

/// N worker Machines with their KindMachines, created in parallel; "delete s" is the whole
/// cluster's deletion.
async fn machines(n: usize, workload: &ApiServer, steady: bool) -> Provider {
    let Setup {
        client,
        ns,
        manager,
        core,
    } = setup(workload).await;
    let name = core.name.clone();
    let nodes: Api<Node> = Api::all(workload.client().await);
    for i in 0..n {
        register_node(&nodes, &format!("{name}-md-{i}")).await;
    }
    let watch = MachineWatch::start(&client, &ns, None);
    let recorder = timeline::Recorder::start(&name);
    tokio::time::sleep(Duration::from_secs(1)).await;
    settled("capkind", n).await;
    let before = counters(&manager);
    let cpu_before = cpu::sample();
    let started = Instant::now();
    eprintln!(
        "N={n}: Machines created from {} (UTC, as in the manager's log)",
        chrono::Utc::now().format("%H:%M:%S%.3f")
    );
    let creations = (0..n).map(|_| async {
        let t0 = Instant::now();
        let t0_unix = timeline::now();
        let name = core
            .add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
            .await
            .expect("machine");
        (name, t0, (t0_unix, timeline::now()))
    });
    let made: Vec<(String, Instant, (f64, f64))> = futures::future::join_all(creations).await;
    let ready = watch.ready(n, &manager).await;
    cpu::report("capkind", n, &cpu_before, &cpu::sample());
    let last = ready.values().max().copied().expect("ready");
    let wall = last.duration_since(started).as_secs_f64();
    let per_machine: Vec<f64> = made
        .iter()
        .map(|(name, t0, _)| ready[name].duration_since(*t0).as_secs_f64())
        .collect();
    let docker_seen = recorder.stop(&bootstrap::script_path());
    let marks = watch.marks();
    let started: Vec<Started> = made
        .iter()
        .map(|(machine, _, (t0, km_created))| Started {
            machine: machine.clone(),
            t0: *t0,
            lead: vec![
                Some(*km_created),
                marks.get(machine).and_then(|m| m.finalizer),
            ],
        })
        .collect();
    let lead = ["KindMachine", "finalizer"];
    provider_timeline(n, &name, &lead, &started, &docker_seen, &marks).await;
    let measured = measure(&manager, n, &n.to_string(), &before, steady).await;
    drop(watch);

    let deleting = Instant::now();
    core.delete().await.expect("delete the cluster");
    let delete_seconds = deleting.elapsed().as_secs_f64();
    Provider::new(
        n,
        latencies(per_machine, wall),
        &before,
        measured,
        delete_seconds,
    )
}

/// The pool's figures, what [`PoolWatch`] saw.
#[derive(Default)]
struct PoolSeen {
    /// When the pool first reported ready with each number of replicas, every one ready.
    ready_with: HashMap<usize, Instant>,
    /// The pool's resource versions seen: one per write to the KindMachinePool.
    versions: std::collections::HashSet<String>,
}

/// The benchmark's watch on one KindMachinePool.
struct PoolWatch {
    seen: Arc<Mutex<PoolSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolWatch {
    fn start(pool: &CorePool) -> Self {
        let seen: Arc<Mutex<PoolSeen>> = Arc::default();
        let config = watcher::Config::default().fields(&format!("metadata.name={}", pool.name));
        let stream = watcher(pool.kind_pools(), config).applied_objects();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut stream = stream.boxed();
                while let Some(Ok(kmp)) = stream.next().await {
                    let mut seen = seen.lock().expect("lock");
                    if let Some(v) = kmp.resource_version() {
                        seen.versions.insert(v);
                    }
                    let Some(st) = kmp.status.as_ref() else {
                        continue;
                    };
                    let replicas = usize::try_from(st.replicas).unwrap_or(0);
                    if st.ready
                        && st.instances.len() == replicas
                        && st.instances.iter().all(|i| i.ready)
                    {
                        seen.ready_with.entry(replicas).or_insert_with(Instant::now);
                    }
                }
            }
        });
        Self { seen, task }
    }

    /// Waits until the pool is ready with `n` replicas; returns when it first was (since
    /// [`PoolWatch::forget`]).
    async fn ready_with(&self, n: usize, manager: &ManagerProcess) -> Instant {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = self.seen.lock().expect("lock").ready_with.get(&n) {
                return *at;
            }
            assert!(
                Instant::now() < deadline,
                "the pool was not ready with {n} replicas within {TIMEOUT:?}:\n{}",
                manager.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many writes to the KindMachinePool the watch has seen.
    fn writes(&self) -> usize {
        self.seen.lock().expect("lock").versions.len()
    }

    /// Forgets the readiness seen so far, so that a later state is waited for afresh.
    fn forget(&self, n: usize) {
        self.seen.lock().expect("lock").ready_with.remove(&n);
    }
}

impl Drop for PoolWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The writes of the Events the manager published about `pool`: one per Event, and one per
/// repeat (kube's recorder PATCHes a repeated reason into the Event's series).
async fn pool_events(pool: &CorePool) -> usize {
    use k8s_openapi::api::events::v1::Event;
    let events = Api::<Event>::namespaced(pool.client.clone(), &pool.namespace)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    events
        .iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("KindMachinePool")
                    && r.name.as_deref() == Some(&pool.name)
            })
        })
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| usize::try_from(s.count).unwrap_or(1))
        })
        .sum()
}

/// Scales the pool of `n` back to 0 and waits until every instance is gone and the pool is ready
/// with none; returns the seconds it took. Its Docker calls and writes per instance go to stderr.
async fn scale_down(
    pool: &CorePool,
    watch: &MachineWatch,
    pool_watch: &PoolWatch,
    manager: &ManagerProcess,
    n: usize,
) -> f64 {
    let down_before = counters(manager);
    pool_watch.forget(0);
    let down = Instant::now();
    pool.scale(0).await.expect("scale down");
    watch.gone(manager).await;
    pool_watch.ready_with(0, manager).await;
    let down_seconds = down.elapsed().as_secs_f64();
    let down_after = counters(manager);
    eprintln!(
        "N={n}: scaled to 0 in {down_seconds:.2} s (every instance gone): {:.1} Docker calls and {:.1} API writes per instance",
        (down_after.docker - down_before.docker) / n as f64,
        (down_after.writes - down_before.writes) / n as f64
    );
    down_seconds
}

/// One MachinePool and its KindMachinePool at 0 replicas, scaled to N (core's MachinePool
/// controller played by test/src/core_pool.rs), timed from the scale to each instance ready and
/// to the pool ready with N replicas; "delete s" is the scale back to 0, until every instance
/// is gone.
async fn pool(n: usize, workload: &ApiServer, steady: bool) -> Provider {
    let Setup {
        client,
        ns,
        manager,
        core,
    } = setup(workload).await;
    let name = core.name.clone();
    let pool = core
        .add_pool(
            "pool",
            0,
            "v1.31.0",
            TRIVIAL_BOOTSTRAP,
            serde_json::json!({"template": machine_spec()}),
        )
        .await
        .expect("MachinePool and KindMachinePool");
    let pool_watch = PoolWatch::start(&pool);
    pool_watch.ready_with(0, &manager).await;
    let nodes: Api<Node> = Api::all(workload.client().await);
    let watch = MachineWatch::start(&client, &ns, Some((nodes, name.clone())));
    let recorder = timeline::Recorder::start(&name);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counters(&manager);
    let (pool_writes, pool_events_before) = (pool_watch.writes(), pool_events(&pool).await);
    eprintln!(
        "N={n}: pool scaled from {} (UTC, as in the manager's log)",
        chrono::Utc::now().format("%H:%M:%S%.3f")
    );
    let (started, t0) = (Instant::now(), timeline::now());
    pool.scale(i32::try_from(n).expect("replicas"))
        .await
        .expect("scale up");
    let ready = watch.ready(n, &manager).await;
    let pool_ready = pool_watch.ready_with(n, &manager).await;
    let wall = pool_ready.duration_since(started).as_secs_f64();
    let per_machine: Vec<f64> = ready
        .values()
        .map(|at| at.duration_since(started).as_secs_f64())
        .collect();
    let docker_seen = recorder.stop(&bootstrap::script_path());
    let marks = watch.marks();
    let mut instances: Vec<&String> = ready.keys().collect();
    instances.sort();
    let started_at: Vec<Started> = instances
        .iter()
        .map(|&machine| {
            let m = marks.get(machine).copied().unwrap_or_default();
            Started {
                machine: machine.clone(),
                t0,
                lead: vec![m.seen, m.owned, m.finalizer],
            }
        })
        .collect();
    let lead = ["KindMachine", "Machine", "finalizer"];
    provider_timeline(n, &name, &lead, &started_at, &docker_seen, &marks).await;
    eprintln!(
        "N={n}: pool ready with {n} replicas {wall:.2} s after the scale, {:.2} s after the last instance",
        pool_ready
            .duration_since(ready.values().max().copied().expect("ready"))
            .as_secs_f64()
    );
    let measured = measure(&manager, n, &format!("pool-{n}"), &before, steady).await;
    eprintln!(
        "N={n}: the pool's own writes: {} to the KindMachinePool, {n} instances created, {} Events",
        pool_watch.writes() - pool_writes,
        pool_events(&pool).await - pool_events_before
    );

    let down_seconds = scale_down(&pool, &watch, &pool_watch, &manager, n).await;
    drop((watch, pool_watch));
    pool.delete(TIMEOUT).await.expect("delete the pool");
    core.delete().await.expect("delete the cluster");
    Provider::new(
        n,
        latencies(per_machine, wall),
        &before,
        measured,
        down_seconds,
    )
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The median of some figures.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The machine and the manager, as the first lines of the output.
fn machine_line(server: &ApiServer) {
    println!(
        "machine: {} cores, {} MiB memory, kernel {}, Docker {}, kube-apiserver at {}, load average {}",
        command("nproc", &[]),
        command("sh", &["-c", "free -m | awk '/Mem:/ {print $2}'"]),
        command("uname", &["-r"]),
        command("docker", &["version", "--format", "{{.Server.Version}}"]),
        server.url(),
        command("sh", &["-c", "cut -d' ' -f1-3 /proc/loadavg"])
    );
    println!("manager: {}", capkind_test::process::binary().display());
}

/// Arguments: the sizes (default 10 50 100), and `--rounds R` (default 3): each size is measured
/// R times, floor and provider one after the other, because on 2 cores one run's figures move
/// by a fifth from run to run. `--pool` measures a MachinePool scaled from 0 to each size
/// instead of single Machines (default size 20). `--real` runs only the real-cluster scenario
/// ([`real`]), R rounds.
#[tokio::main]
async fn main() {
    let mut rounds = 3usize;
    let mut sizes: Vec<usize> = Vec::new();
    let mut real_only = false;
    let mut mode = Mode::Machines;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--real" {
            real_only = true;
        } else if arg == "--pool" {
            mode = Mode::Pool;
        } else if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|r| r.parse().ok())
                .filter(|r| *r > 0)
                .expect("--rounds takes a positive number");
        } else {
            sizes.push(
                arg.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .expect("sizes are positive numbers (or --pool, --rounds R, --real)"),
            );
        }
    }
    if real_only {
        let server = shared();
        let _ = images();
        println!("# capkind provisioning benchmark: the real cluster");
        machine_line(server);
        println!("rounds: {rounds}");
        println!();
        real::run(rounds).await;
        return;
    }
    if sizes.is_empty() {
        sizes = match mode {
            Mode::Machines => vec![10, 50, 100],
            Mode::Pool => vec![20],
        };
    }
    // What one of the N is, and what the last column times.
    let (unit, down) = match mode {
        Mode::Machines => ("machine", "delete s"),
        Mode::Pool => ("instance", "scale to 0 s"),
    };
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let server = shared();
    let _ = images();
    let workload = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("workload API server");

    match mode {
        Mode::Machines => println!("# capkind provisioning benchmark"),
        Mode::Pool => {
            println!("# capkind provisioning benchmark: a MachinePool scaled from 0 to N")
        }
    }
    machine_line(server);
    println!("rounds per size: {rounds}");
    println!();
    println!(
        "| N | round | floor p50 s | floor p95 s | floor wall s | capkind p50 s | capkind p95 s | capkind wall s | ratio p50 | ratio wall | Docker calls/{unit} | API writes/{unit} | peak RSS MiB | CPU s | {down} |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut steady = None;
    let mut summary = Vec::new();
    for &n in &sizes {
        let (mut ratio_p50, mut ratio_wall) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let f = floor(n).await;
            let p = provider(mode, n, &workload, n == largest && round == rounds).await;
            let l = &p.latencies;
            ratio_p50.push(l.p50 / f.p50);
            ratio_wall.push(l.wall / f.wall);
            println!(
                "| {n} | {round} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} |",
                f.p50,
                f.p95,
                f.wall,
                l.p50,
                l.p95,
                l.wall,
                l.p50 / f.p50,
                l.wall / f.wall,
                p.docker_calls,
                p.api_writes,
                p.peak_rss_mib,
                p.cpu_seconds,
                p.delete_seconds
            );
            if p.steady.is_some() {
                steady = p.steady.map(|s| (n, s));
            }
        }
        let range = |v: &[f64]| {
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(0.0, f64::max);
            format!("{min:.2}-{max:.2}")
        };
        summary.push(format!(
            "| {n} | {:.2} | {} | {:.2} | {} |",
            median(ratio_p50.clone()),
            range(&ratio_p50),
            median(ratio_wall.clone()),
            range(&ratio_wall)
        ));
    }
    println!();
    println!("| N | median ratio p50 | range | median ratio wall | range |");
    println!("|---|---|---|---|---|");
    for row in summary {
        println!("{row}");
    }
    if let Some((n, s)) = steady {
        println!();
        println!(
            "steady state, {n} ready {unit}s, over {} min: {:.0} API writes/min, {:.0} Docker calls/min, {:.0} reconciles/min, manager RSS {:.1} MiB",
            s.minutes, s.writes, s.docker_calls, s.reconciles, s.rss_mib
        );
    }
}

/// The real-cluster scenario (`--real`): a kubeadm v1.20.2 cluster of one control plane and two
/// workers, every Node Ready, built by the provider as Cluster API builds it, against a floor
/// that runs the same kubeadm init and joins in containers of the same spec with no controller.
mod real {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use capkind::controllers::kindmachine::bootstrap;
    use capkind::docker::{ContainerRuntime, Engine, labels};
    use capkind::loadbalancer;
    use capkind_api::v1beta2::KindMachine;
    use capkind_test::core::{CoreCluster, Role};
    use capkind_test::docker::{Janitor, engine, images, kube_node_image};
    use capkind_test::fixtures::kind_spec;
    use capkind_test::kubeadm::{
        BootstrapToken, ClusterConfig, ClusterPki, DEFAULT_TOKEN_TTL, admin_kubeconfig,
        init_cloud_config, server_url, store_kubeconfig, with_server, worker_join_cloud_config,
    };
    use capkind_test::kubeadm_cluster::{INIT_ARGS, machine_spec, node};
    use capkind_test::process::ManagerProcess;
    use capkind_test::workload::{Workload, is_ready};
    use capkind_test::{names, shared};
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Node;
    use kube::api::Api;
    use kube::runtime::{WatchStreamExt, watcher};

    use super::{counters, median, proc_status_mib};

    /// A kubeadm run (boot, init or join) on 2 cores with other work running.
    const MACHINE_TIMEOUT: Duration = Duration::from_secs(300);
    /// Workers per cluster.
    const WORKERS: usize = 2;

    /// Seconds since the epoch: the clock the node containers' timestamps share with the host.
    fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// When things happened in one run, in seconds since the epoch.
    #[derive(Clone, Debug, Default)]
    pub struct Times {
        /// The run started: the Cluster is created (provider), the network is (floor).
        t0: f64,
        /// The load balancer runs and has an address (provider: the KindCluster is ready).
        lb: f64,
        /// The control-plane machine is asked for (Machine created; floor: container created).
        cp_asked: f64,
        /// Its container runs (Docker's StartedAt).
        cp_running: f64,
        /// Its containerd is up (systemd's ActiveEnterTimestamp of containerd.service); the
        /// images are in the node image, so that is when it answers with them.
        cp_images: f64,
        /// kubeadm init is done (the mtime of Cluster API's sentinel, written right after it).
        cp_init: f64,
        /// The harness sees it done (KindMachine ready; floor: the bootstrap exec returned).
        cp_seen: f64,
        /// The workers are asked for, after the kubeconfig, the join token and
        /// ControlPlaneInitialized.
        workers_asked: f64,
        /// The last worker container runs.
        workers_running: f64,
        /// The last worker's containerd is up.
        workers_images: f64,
        /// The last kubeadm join is done.
        joins: f64,
        /// The harness sees the last worker done.
        workers_seen: f64,
        /// The last of the three Nodes is seen Ready.
        nodes_ready: f64,
    }

    impl Times {
        /// The offsets from `t0` of every mark, in the table's order.
        fn offsets(&self) -> [f64; 12] {
            [
                self.lb,
                self.cp_asked,
                self.cp_running,
                self.cp_images,
                self.cp_init,
                self.cp_seen,
                self.workers_asked,
                self.workers_running,
                self.workers_images,
                self.joins,
                self.workers_seen,
                self.nodes_ready,
            ]
            .map(|t| t - self.t0)
        }

        /// The phases: (name, seconds).
        fn phases(&self) -> [(&'static str, f64); 9] {
            [
                ("load balancer", self.lb - self.t0),
                (
                    "CP boot (asked to running)",
                    self.cp_running - self.cp_asked,
                ),
                (
                    "CP images ready (running to containerd up)",
                    self.cp_images - self.cp_running,
                ),
                (
                    "kubeadm init (containerd up to init done)",
                    self.cp_init - self.cp_images,
                ),
                (
                    "init seen (init done to the harness sees it)",
                    self.cp_seen - self.cp_init,
                ),
                (
                    "kubeconfig, token, CP initialized",
                    self.workers_asked - self.cp_seen,
                ),
                (
                    "worker boot and images (asked to last containerd up)",
                    self.workers_images - self.workers_asked,
                ),
                (
                    "joins (to the last join done)",
                    self.joins - self.workers_asked,
                ),
                (
                    "Nodes Ready (last join done to all Ready)",
                    self.nodes_ready - self.joins,
                ),
            ]
        }

        fn total(&self) -> f64 {
            self.nodes_ready - self.t0
        }
    }

    /// Keys, kubeconfig and token of one cluster, made before its clock starts: they cost the
    /// same on both sides and are not the provider's work.
    struct Prepared {
        pki: ClusterPki,
        /// The admin kubeconfig, its server filled in once the endpoint is known.
        kubeconfig: String,
        token: BootstrapToken,
    }

    fn prepare(cluster: &str) -> Prepared {
        let pki = ClusterPki::generate().expect("cluster PKI");
        let kubeconfig =
            admin_kubeconfig(cluster, "https://0.0.0.0:6443", &pki.ca).expect("admin kubeconfig");
        Prepared {
            pki,
            kubeconfig,
            token: BootstrapToken::generate(),
        }
    }

    /// Watches the workload cluster's Nodes; the first moment each is seen Ready.
    fn watch_nodes(
        workload: &Workload,
    ) -> (
        Arc<Mutex<HashMap<String, f64>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let ready: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let api: Api<Node> = Api::all(workload.client.clone());
        let seen = ready.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                if let Ok(node) = event
                    && is_ready(&node)
                {
                    let t = now();
                    seen.lock()
                        .expect("lock")
                        .entry(kube::ResourceExt::name_any(&node))
                        .or_insert(t);
                }
            }
        });
        (ready, task)
    }

    /// Waits until every one of `names` is in `seen`; the latest of their times.
    async fn all_seen(
        seen: &Arc<Mutex<HashMap<String, f64>>>,
        names: &[String],
        what: &str,
        timeout: Duration,
        diagnose: impl Fn() -> String,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let seen = seen.lock().expect("lock");
                if names.iter().all(|n| seen.contains_key(n)) {
                    return names.iter().map(|n| seen[n]).fold(0.0, f64::max);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what} not within {timeout:?}:\n{}",
                diagnose()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates the join token in the workload cluster once its API answers (as CABPK does).
    async fn create_token(workload: &Workload, token: &BootstrapToken) {
        capkind_test::wait::until("the bootstrap token created", MACHINE_TIMEOUT, || async {
            token
                .create(&workload.client, DEFAULT_TOKEN_TTL)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
    }

    fn docker_cli(args: &[&str]) -> String {
        super::command("docker", args)
    }

    /// What happened inside node container `name`: (running, containerd up, kubeadm done), read
    /// after the fact so that nothing polls the node while it boots.
    async fn node_times(docker: &Engine, name: &str) -> (f64, f64, f64) {
        let started = docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", name]);
        let running = chrono::DateTime::parse_from_rfc3339(&started)
            .map(|t| t.timestamp_micros() as f64 / 1e6)
            .unwrap_or_else(|e| panic!("StartedAt of {name}: {started:?}: {e}"));
        let script = format!(
            "date -d \"$(systemctl show containerd -p ActiveEnterTimestamp --value --timestamp=us+utc)\" +%s.%N; \
             date -r {} +%s.%N",
            capkind::bootstrap::SENTINEL
        );
        let out = docker
            .exec(name, &["sh", "-c", &script], None)
            .await
            .expect("exec the timestamps");
        let text = String::from_utf8_lossy(&out.stdout);
        let values: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert!(values.len() == 2, "timestamps of {name}: {text:?}");
        (running, values[0], values[1])
    }

    /// Fills the in-node marks of `times` from the control plane `cp` and the `workers`.
    async fn read_node_times(times: &mut Times, docker: &Engine, cp: &str, workers: &[String]) {
        (times.cp_running, times.cp_images, times.cp_init) = node_times(docker, cp).await;
        for w in workers {
            let (running, images, joined) = node_times(docker, w).await;
            times.workers_running = times.workers_running.max(running);
            times.workers_images = times.workers_images.max(images);
            times.joins = times.joins.max(joined);
        }
    }

    /// The floor: the same containers, load balancer configuration, bootstrap plans and
    /// kubeadm runs, straight through the Docker API with no controller, in Cluster API's
    /// order (the endpoint before the init data, the join data after the init).
    pub async fn floor() -> Times {
        let docker = engine().await;
        let name = names::unique("floor");
        let network = names::unique("net");
        let cp = format!("{name}-cp-0");
        let workers: Vec<String> = (1..=WORKERS).map(|i| format!("{name}-md-{i}")).collect();
        let mut janitor = Janitor::default();
        janitor.track_network(&network);
        janitor.track(loadbalancer::container_name(&name));
        janitor.track(&cp);
        for w in &workers {
            janitor.track(w);
        }
        let prepared = prepare(&name);
        let image = kube_node_image();
        let image_command = capkind_test::docker::image_command(&image);
        let dir = tempfile::tempdir().expect("temporary directory");
        let owner = |kind: &str, of: &str| labels::Owner {
            kind: kind.into(),
            namespace: "bench".into(),
            name: of.to_string(),
            uid: of.to_string(),
        };
        let node_spec = |node: &str, control_plane: bool| {
            capkind::node::container_spec(&capkind::node::Params {
                cluster: &name,
                name: node,
                image: &image,
                network: &network,
                control_plane,
                failure_domain: None,
                extra_mounts: &[],
                owner: &owner("KindMachine", node),
                privileges: capkind::node::Privileges::Capabilities,
                proxy_env: &[],
                image_command: &image_command,
                mode: capkind::node::Mode::default(),
            })
        };
        // One node: create, start, then (once `data` is there) one upload and one attached exec
        // of the generated script, which waits for systemd and runs kubeadm.
        let bootstrap = |node: String, data: String| {
            let docker = docker.clone();
            async move {
                let plan = capkind::bootstrap::plan(Some("cloud-config"), data.as_bytes())
                    .expect("bootstrap plan");
                let archive = bootstrap::archive(&plan).expect("archive");
                docker.upload(&node, "/", archive).await.expect("upload");
                let run = format!(
                    "mkdir -p /run/capkind /run/cluster-api && sh {} && test -f {}",
                    bootstrap::script_path(),
                    capkind::bootstrap::SENTINEL
                );
                let out = docker
                    .exec(&node, &["sh", "-c", &run], None)
                    .await
                    .expect("exec");
                if out.exit_code != 0 {
                    let log = docker
                        .exec(
                            &node,
                            &[
                                "sh",
                                "-c",
                                "tail -n 60 /var/lib/capkind/state/bootstrap.log",
                            ],
                            None,
                        )
                        .await
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    panic!(
                        "the floor's bootstrap failed in {node}: exit {}\n{log}",
                        out.exit_code
                    );
                }
                now()
            }
        };
        let start = |node: String, control_plane: bool| {
            let docker = docker.clone();
            let spec = node_spec(&node, control_plane);
            async move {
                docker.create(&spec).await.expect("create");
                docker.start(&node).await.expect("start");
            }
        };

        let mut times = Times {
            t0: now(),
            ..Default::default()
        };
        docker.ensure_network(&network).await.expect("network");
        let lb = loadbalancer::container_name(&name);
        let lb_spec = loadbalancer::container_spec(
            &name,
            &images().haproxy,
            &network,
            6443,
            None,
            &owner("KindCluster", &name),
        );
        docker
            .create(&lb_spec)
            .await
            .expect("create the load balancer");
        docker.start(&lb).await.expect("start the load balancer");
        let address = docker
            .inspect(&lb)
            .await
            .expect("inspect")
            .and_then(|c| c.networks.get(&network).and_then(|n| n.ipv4.clone()))
            .expect("the load balancer's address");
        let endpoint = format!("{address}:6443");
        times.lb = now();

        let config = ClusterConfig::new(&name, &endpoint);
        let init = init_cloud_config(&config, &node(true), &prepared.pki, INIT_ARGS);
        times.cp_asked = now();
        start(cp.clone(), true).await;
        // As the KindMachine controller does for a control-plane node, before its bootstrap.
        let backends = loadbalancer::backends(&docker, &name, &network, &[])
            .await
            .expect("backends");
        let rendered = loadbalancer::config::render(
            loadbalancer::config::DEFAULT_TEMPLATE,
            &loadbalancer::config::Input {
                frontend_port: 6443,
                ipv6: false,
                backends,
            },
        )
        .expect("render");
        loadbalancer::write_config(&docker, &lb, &rendered)
            .await
            .expect("load balancer configuration");
        times.cp_seen = bootstrap(cp.clone(), init).await;

        let kubeconfig =
            with_server(&prepared.kubeconfig, &server_url(&endpoint)).expect("kubeconfig");
        let workload = Workload::connect(dir.path(), &kubeconfig).await;
        let (ready, watch) = watch_nodes(&workload);
        create_token(&workload, &prepared.token).await;
        let join = worker_join_cloud_config(
            &config,
            &node(false),
            &prepared.pki.ca_cert_hash(),
            &prepared.token,
            &[],
        );
        times.workers_asked = now();
        let joined = futures::future::join_all(workers.iter().map(|w| {
            let (w, join) = (w.clone(), join.clone());
            async move {
                start(w.clone(), false).await;
                bootstrap(w, join).await
            }
        }))
        .await;
        times.workers_seen = joined.into_iter().fold(0.0, f64::max);
        let mut all = vec![cp.clone()];
        all.extend(workers.iter().cloned());
        times.nodes_ready = all_seen(
            &ready,
            &all,
            "the floor's Nodes Ready",
            MACHINE_TIMEOUT,
            || workload.kubectl(&["get", "nodes", "-o", "wide"]).1,
        )
        .await;
        watch.abort();
        read_node_times(&mut times, &docker, &cp, &workers).await;
        for c in all.iter().chain([&lb]) {
            let _ = docker.remove(c).await;
        }
        let _ = docker.remove_network(&network).await;
        drop(janitor);
        times
    }

    /// Figures of one provider run.
    pub struct Provider {
        pub times: Times,
        pub docker_calls: f64,
        pub api_writes: f64,
        pub reconciles: f64,
        pub peak_rss_mib: f64,
        pub delete_seconds: f64,
        pub steady: Option<super::Steady>,
        /// Every request counter's growth over the run (not per machine).
        pub breakdown: String,
    }

    /// The provider: a fresh manager, then the cluster as Cluster API builds it
    /// (test/src/kubeadm_cluster.rs: core's objects, CABPK's and KCP's data in their order),
    /// with watches instead of polls for what the harness waits on.
    pub async fn provider(steady: bool) -> Provider {
        let server = shared();
        let client = server.client().await;
        let ns = server.namespace(&client).await;
        let extra = std::env::var("CAPKIND_BENCH_MANAGER_ARGS").unwrap_or_default();
        let mut args = vec!["--namespace", ns.as_str()];
        args.extend(extra.split_whitespace());
        let manager = ManagerProcess::start(server, &args);
        capkind_test::wait::until("the manager ready", Duration::from_secs(60), || async {
            let r = capkind_test::http::get(manager.health_port, "/readyz");
            if capkind_test::http::is_ok(&r) {
                Ok(())
            } else {
                Err(r)
            }
        })
        .await;
        let docker = engine().await;
        let name = names::unique("real");
        let network = names::unique("net");
        let mut janitor = Janitor::default();
        janitor.track_network(&network);
        let prepared = prepare(&name);
        let dir = tempfile::tempdir().expect("temporary directory");

        // KindMachines ready as core sees them (status.ready and a provider ID).
        let ready_at: Arc<Mutex<HashMap<String, f64>>> = Arc::default();
        let machines_watch = {
            let ready_at = ready_at.clone();
            let api: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
            tokio::spawn(async move {
                let mut stream = watcher(api, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
                    .boxed();
                while let Some(event) = stream.next().await {
                    if let Ok(km) = event
                        && km.provisioned()
                        && !km.spec.provider_id.is_empty()
                    {
                        let t = now();
                        ready_at
                            .lock()
                            .expect("lock")
                            .entry(kube::ResourceExt::name_any(&km))
                            .or_insert(t);
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = counters(&manager);
        let log_tail = || manager.log_tail();

        let mut times = Times {
            t0: now(),
            ..Default::default()
        };
        eprintln!(
            "real: Cluster {name} created at {} (UTC, as in the manager's log)",
            chrono::Utc::now().format("%H:%M:%S%.3f")
        );
        let core = CoreCluster::create(&client, &ns, &name, kind_spec(&network), machine_spec(&[]))
            .await
            .expect("create the Cluster and KindCluster");
        let kc = core.infrastructure_ready(MACHINE_TIMEOUT).await;
        times.lb = now();
        let endpoint = kc.spec.control_plane_endpoint.clone().expect("endpoint");
        let endpoint = format!(
            "{}:{}",
            endpoint.host.clone().expect("host"),
            endpoint.port()
        );
        let config = ClusterConfig::new(&name, &endpoint);
        let init = init_cloud_config(&config, &node(true), &prepared.pki, INIT_ARGS);
        times.cp_asked = now();
        let cp = core
            .add_machine(Role::ControlPlane, &init)
            .await
            .expect("control-plane machine");
        for m in [cp.clone()]
            .into_iter()
            .chain((1..=WORKERS).map(|i| format!("{name}-md-{i}")))
        {
            janitor.track(m);
        }
        times.cp_seen = all_seen(
            &ready_at,
            std::slice::from_ref(&cp),
            "the control plane's KindMachine ready",
            MACHINE_TIMEOUT,
            log_tail,
        )
        .await;
        let kubeconfig =
            with_server(&prepared.kubeconfig, &server_url(&endpoint)).expect("kubeconfig");
        store_kubeconfig(&client, &ns, &name, &kubeconfig, None)
            .await
            .expect("kubeconfig Secret");
        let workload = Workload::connect(dir.path(), &kubeconfig).await;
        let (nodes_ready, nodes_watch) = watch_nodes(&workload);
        create_token(&workload, &prepared.token).await;
        core.control_plane_initialized().await;
        let join = worker_join_cloud_config(
            &config,
            &node(false),
            &prepared.pki.ca_cert_hash(),
            &prepared.token,
            &[],
        );
        times.workers_asked = now();
        let workers: Vec<String> =
            futures::future::join_all((0..WORKERS).map(|_| core.add_machine(Role::Worker, &join)))
                .await
                .into_iter()
                .map(|r| r.expect("worker machine"))
                .collect();
        times.workers_seen = all_seen(
            &ready_at,
            &workers,
            "the workers' KindMachines ready",
            MACHINE_TIMEOUT,
            log_tail,
        )
        .await;
        let mut all = vec![cp.clone()];
        all.extend(workers.iter().cloned());
        times.nodes_ready = all_seen(
            &nodes_ready,
            &all,
            "the Nodes Ready",
            MACHINE_TIMEOUT,
            || {
                format!(
                    "{}\n{}",
                    workload.kubectl(&["get", "nodes", "-o", "wide"]).1,
                    log_tail()
                )
            },
        )
        .await;
        nodes_watch.abort();
        read_node_times(&mut times, &docker, &cp, &workers).await;

        // The reconciles that follow readiness: the provider IDs on the workload Nodes.
        let nodes: Api<Node> = Api::all(workload.client.clone());
        capkind_test::wait::until(
            "the provider IDs on the Nodes",
            Duration::from_secs(120),
            || async {
                for n in &all {
                    let node = nodes.get(n).await.map_err(|e| e.to_string())?;
                    if node.spec.and_then(|s| s.provider_id).is_none() {
                        return Err(format!("{n} has no provider ID"));
                    }
                }
                Ok(())
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let after = counters(&manager);
        let pid = manager.child.id();
        let steady = if steady {
            let minutes = 1.0;
            let start = counters(&manager);
            tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0)).await;
            let end = counters(&manager);
            Some(super::Steady {
                minutes,
                writes: (end.writes - start.writes) / minutes,
                docker_calls: (end.docker - start.docker) / minutes,
                reconciles: (end.reconciles - start.reconciles) / minutes,
                rss_mib: proc_status_mib(pid, "VmRSS:"),
            })
        } else {
            None
        };
        let peak_rss_mib = proc_status_mib(pid, "VmHWM:");
        machines_watch.abort();
        let kept = std::env::temp_dir().join("capkind-bench-manager-real.log");
        let _ = std::fs::copy(&manager.log, &kept);
        let deleting = Instant::now();
        core.delete().await.expect("delete the cluster");
        let delete_seconds = deleting.elapsed().as_secs_f64();
        drop(janitor);
        Provider {
            times,
            docker_calls: after.docker - before.docker,
            api_writes: after.writes - before.writes,
            reconciles: after.reconciles - before.reconciles,
            peak_rss_mib,
            delete_seconds,
            steady,
            breakdown: super::breakdown(&before, &after, 1),
        }
    }

    fn row(side: &str, round: usize, t: &Times) -> String {
        let cells: Vec<String> = t.offsets().iter().map(|v| format!("{v:.1}")).collect();
        format!("| {round} | {side} | {} |", cells.join(" | "))
    }

    /// Runs `rounds` rounds, floor then provider, and prints the tables.
    pub async fn run(rounds: usize) {
        let _ = kube_node_image();
        println!("## Real cluster: 1 control plane + {WORKERS} workers, kubeadm v1.20.2");
        println!();
        println!(
            "Seconds from the start (the Cluster created; floor: the network) to each mark; the last column is the time to every Node Ready."
        );
        println!();
        println!(
            "| round | side | LB ready | CP asked | CP running | CP images ready | init done | init seen | workers asked | workers running | workers images ready | joins done | workers seen | Nodes Ready |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let mut results: Vec<(Times, Provider)> = Vec::new();
        for round in 1..=rounds {
            let f = floor().await;
            println!("{}", row("floor", round, &f));
            let p = provider(round == rounds).await;
            println!("{}", row("capkind", round, &p.times));
            eprint!(
                "real round {round}: manager requests over the whole cluster\n{}",
                p.breakdown
            );
            results.push((f, p));
        }
        println!();
        println!(
            "| round | floor s | capkind s | ratio | Docker calls | API writes | reconciles | peak RSS MiB | delete s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for (i, (f, p)) in results.iter().enumerate() {
            let ratio = p.times.total() / f.total();
            ratios.push(ratio);
            println!(
                "| {} | {:.1} | {:.1} | {ratio:.3} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
                i + 1,
                f.total(),
                p.times.total(),
                p.docker_calls,
                p.api_writes,
                p.reconciles,
                p.peak_rss_mib,
                p.delete_seconds
            );
        }
        let (lo, hi) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        println!();
        println!(
            "median ratio (capkind / floor, every Node Ready): **{:.3}** (range {lo:.3}-{hi:.3}, {} rounds)",
            median(ratios.clone()),
            ratios.len()
        );
        println!();
        println!("| phase (median of the rounds) | floor s | capkind s | difference s |");
        println!("|---|---|---|---|");
        let names = results[0].0.phases().map(|(n, _)| n);
        for (i, name) in names.iter().enumerate() {
            let f = median(results.iter().map(|(f, _)| f.phases()[i].1).collect());
            let p = median(results.iter().map(|(_, p)| p.times.phases()[i].1).collect());
            println!("| {name} | {f:.2} | {p:.2} | {:+.2} |", p - f);
        }
        let f = median(results.iter().map(|(f, _)| f.total()).collect());
        let p = median(results.iter().map(|(_, p)| p.times.total()).collect());
        println!(
            "| **total: every Node Ready** | {f:.2} | {p:.2} | {:+.2} |",
            p - f
        );
        if let Some(s) = results.last().and_then(|(_, p)| p.steady.as_ref()) {
            println!();
            println!(
                "steady state, the ready real cluster (3 Nodes Ready, provider IDs set), over {} min: {:.0} API writes/min, {:.0} Docker calls/min, {:.0} reconciles/min, manager RSS {:.1} MiB",
                s.minutes, s.writes, s.docker_calls, s.reconciles, s.rss_mib
            );
        }
    }
}

/// Where the time of each machine goes: the phases of both sides from Docker's own events
/// (the daemon's clock, the same for the floor and the provider) and the benchmark's watch,
/// each as seconds after the machine's start (the floor's first call; the provider's Machine
/// creation), and the median of each phase over the machines.
mod timeline {
    use std::collections::HashMap;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Seconds since the Unix epoch.
    pub fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    }

    /// Docker's container events for one cluster, recorded live to a file.
    pub struct Recorder {
        child: Child,
        file: std::path::PathBuf,
    }

    impl Recorder {
        pub fn start(cluster: &str) -> Self {
            let file = std::env::temp_dir().join(format!("{cluster}-timeline"));
            let out = std::fs::File::create(&file).expect("events file");
            let child = Command::new("docker")
                .args([
                    "events",
                    "--filter",
                    "type=container",
                    "--filter",
                    &format!("label=io.x-k8s.kind.cluster={cluster}"),
                    "--format",
                    "{{.TimeNano}}\t{{.Actor.Attributes.name}}\t{{.Action}}",
                ])
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .expect("docker events");
            // `docker events` subscribes asynchronously; give it a moment before the first create.
            std::thread::sleep(Duration::from_millis(300));
            Self { child, file }
        }

        /// The phases seen per container: (create, start, upload, launch), each the first one.
        pub fn stop(mut self, launch_marker: &str) -> HashMap<String, [Option<f64>; 4]> {
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.child.kill();
            let _ = self.child.wait();
            let text = std::fs::read_to_string(&self.file).unwrap_or_default();
            let _ = std::fs::remove_file(&self.file);
            let mut phases: HashMap<String, [Option<f64>; 4]> = HashMap::new();
            for line in text.lines() {
                let mut fields = line.splitn(3, '\t');
                let (Some(at), Some(name), Some(action)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let Ok(nanos) = at.parse::<f64>() else {
                    continue;
                };
                let slot = match action {
                    "create" => 0,
                    "start" => 1,
                    "extract-to-dir" => 2,
                    a if a.starts_with("exec_start") && a.contains(launch_marker) => 3,
                    _ => continue,
                };
                let entry = phases.entry(name.to_string()).or_default();
                entry[slot].get_or_insert(nanos / 1e9);
            }
            phases
        }
    }

    /// When each container's bootstrap wrote its final status, by the node's clock (the host's):
    /// the end of the work, before either side noticed it.
    pub async fn ended(
        docker: &capkind::docker::Engine,
        containers: &[String],
    ) -> HashMap<String, f64> {
        use capkind::docker::ContainerRuntime;
        let looks = containers.iter().map(|c| async move {
            let out = docker
                .exec(
                    c,
                    &[
                        "stat",
                        "-c",
                        "%.9Y",
                        "/var/lib/capkind/state/bootstrap.status",
                    ],
                    None,
                )
                .await
                .ok()?;
            let at = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            Some((c.clone(), at))
        });
        futures::future::join_all(looks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Prints the median of each phase (seconds after the start) over `rows`, each row the
    /// phases of one machine in `names`' order, and the median step from one phase to the next.
    pub fn report(side: &str, n: usize, names: &[&str], rows: &[Vec<Option<f64>>]) {
        let median = |mut v: Vec<f64>| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            Some(v[v.len() / 2])
        };
        let mut line = format!("N={n}: {side} timeline (median s after start):");
        for (i, name) in names.iter().enumerate() {
            let at = median(rows.iter().filter_map(|r| r[i]).collect());
            let step = (i > 0)
                .then(|| {
                    median(
                        rows.iter()
                            .filter_map(|r| Some(r[i]? - r[i - 1]?))
                            .collect(),
                    )
                })
                .flatten();
            match (at, step) {
                (Some(at), Some(step)) => line.push_str(&format!(" {name} {at:.2} (+{step:.2})")),
                (Some(at), None) => line.push_str(&format!(" {name} {at:.2}")),
                _ => line.push_str(&format!(" {name} -")),
            }
        }
        eprintln!("{line}");
    }
}

/// Where the machine's CPU time goes while one side runs, so that a gap between the sides that
/// sits in the nodes' boot can be put on what runs next to them: the kernel's accounting for
/// the whole machine and for Docker's containers together (the nodes, every exec in them, the
/// load balancer), and per host process the daemons, the test's API servers, the manager and
/// this benchmark, each its own time (not its children's: a shim's children include the execs in
/// its container). Host processes that ended between the samples (runc, `docker` commands) and
/// interrupts are what is left: "ended".
mod cpu {
    use std::collections::HashMap;
    use std::time::Instant;

    /// The cgroup (v1, cgroupfs driver) Docker puts every container under.
    const CONTAINERS: &str = "/sys/fs/cgroup/cpuacct/docker/cpuacct.usage";
    /// The host processes named in the report, by command name (the kernel's 15 characters).
    const NAMED: [&str; 9] = [
        "dockerd",
        "containerd",
        "containerd-shim",
        "fuse-overlayfs",
        "kube-apiserver",
        "etcd",
        "capkind",
        "capkind-bench",
        "docker",
    ];

    pub struct Sample {
        at: Instant,
        /// Busy and idle (idle + iowait) seconds of all CPUs, from /proc/stat.
        busy: f64,
        idle: f64,
        /// None where Docker's cgroup is not there to read (cgroup v2, the systemd driver).
        containers: Option<f64>,
        /// Host processes (outside containers): pid -> (command, CPU seconds).
        host: HashMap<u32, (String, f64)>,
    }

    /// The clock ticks per second /proc counts in.
    fn ticks() -> f64 {
        static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        *TICKS.get_or_init(|| {
            super::command("getconf", &["CLK_TCK"])
                .parse()
                .unwrap_or(100.0)
        })
    }

    fn in_container(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(":cpuacct") && l.contains("/docker/"))
    }

    /// (command, utime + stime in seconds) of a process. The command name may hold spaces and
    /// parentheses, so the fields are counted from the last `)`: utime and stime are fields 14
    /// and 15, the 12th and 13th after it.
    pub fn process(pid: u32) -> Option<(String, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let fields: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        Some((comm, fields.iter().sum::<f64>() / ticks()))
    }

    /// Busy and idle seconds of all CPUs so far, from /proc/stat.
    fn totals() -> (f64, f64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest is inside user).
        let get = |i: usize| cpu.get(i).copied().unwrap_or(0.0) / ticks();
        (
            get(0) + get(1) + get(2) + get(5) + get(6) + get(7),
            get(3) + get(4),
        )
    }

    /// The share of the CPUs that was busy over the window, at most.
    pub const QUIET: f64 = 0.2;
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
    const LONGEST: std::time::Duration = std::time::Duration::from_secs(30);

    /// Waits until the CPUs were mostly idle (busy at most [`QUIET`]) over a whole second, at
    /// most 30 s; returns how long it waited and the busy share of the last second. Each side
    /// of a round starts from a quiet machine, not in the tail of what ran before it (the
    /// previous side's containers going away, the test environment starting).
    pub async fn settle() -> (f64, f64) {
        let start = Instant::now();
        loop {
            let (busy0, idle0) = totals();
            tokio::time::sleep(WINDOW).await;
            let (busy1, idle1) = totals();
            let total = (busy1 - busy0) + (idle1 - idle0);
            let share = if total > 0.0 {
                (busy1 - busy0) / total
            } else {
                0.0
            };
            if share <= QUIET || start.elapsed() >= LONGEST {
                return (start.elapsed().as_secs_f64(), share);
            }
        }
    }

    pub fn sample() -> Sample {
        let (busy, idle) = totals();
        let containers = std::fs::read_to_string(CONTAINERS)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|ns| ns / 1e9);
        let host = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| !in_container(pid))
            .filter_map(|pid| Some((pid, process(pid)?)))
            .collect();
        Sample {
            at: Instant::now(),
            busy,
            idle,
            containers,
            host,
        }
    }

    /// One stderr line: the CPU seconds each part used between `before` and `after`.
    pub fn report(side: &str, n: usize, before: &Sample, after: &Sample) {
        let wall = after.at.duration_since(before.at).as_secs_f64();
        let busy = after.busy - before.busy;
        let idle = after.idle - before.idle;
        let mut named: HashMap<&str, f64> = HashMap::new();
        for (pid, (comm, secs)) in &after.host {
            let was = before
                .host
                .get(pid)
                .filter(|(c, _)| c == comm)
                .map_or(0.0, |(_, s)| *s);
            let name = NAMED
                .iter()
                .find(|&&c| c == comm)
                .copied()
                .unwrap_or("other");
            *named.entry(name).or_default() += secs - was;
        }
        let containers = after.containers.zip(before.containers).map(|(a, b)| a - b);
        let host: f64 = named.values().sum();
        let mut line =
            format!("N={n}: {side} CPU s over {wall:.1} s: busy {busy:.1}, idle {idle:.1}; ");
        match containers {
            Some(c) => line.push_str(&format!("in containers {c:.1}")),
            None => line.push_str(&format!("in containers unknown ({CONTAINERS} unreadable)")),
        }
        for name in NAMED.iter().chain(&["other"]) {
            line.push_str(&format!(
                ", {name} {:.1}",
                named.get(name).copied().unwrap_or(0.0)
            ));
        }
        match containers {
            Some(c) => line.push_str(&format!("; ended {:.1}", busy - c - host)),
            None => line.push_str(&format!("; ended and in containers {:.1}", busy - host)),
        }
        eprintln!("{line}");
    }
}
