//! The provisioning benchmark (docs/performance.md; run it with `hack/bench.sh`).
//!
//! For each N (default 1, 10, 50; or the sizes given as arguments), on the real API server and
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
//! Figures are printed, not asserted; per-machine request counts, Docker latencies and phase
//! timestamps go to stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capkind::controllers::kindmachine::bootstrap;
use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::KindMachine;
use capkind_test::core::{CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::{engine, images};
use capkind_test::fixtures::{kind_spec, machine_spec};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names, shared};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
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
            let spec = capkind_test::docker::worker_node_spec(&cluster, &name, &network);
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
                            "systemctl is-system-running; cat /run/capkind/*; ps -ef | head -30",
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
            (started, t0.elapsed().as_secs_f64())
        }
    };
    let phases = futures::future::join_all(names.iter().cloned().map(one)).await;
    let wall = started.elapsed().as_secs_f64();
    let (mut running, per_machine): (Vec<f64>, Vec<f64>) = phases.into_iter().unzip();
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
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| command("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / ticks
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

async fn provider(n: usize, workload: &ApiServer, steady: bool) -> Provider {
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
    let name = names::unique("bench");
    let core = CoreCluster::create(
        &client,
        &ns,
        &name,
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
    // The kubelets register their Nodes while kubeadm runs, before the bootstrap ends.
    let nodes: Api<Node> = Api::all(workload.client().await);
    for i in 0..n {
        let node: Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": format!("{name}-md-{i}")}}),
        )
        .expect("node");
        nodes
            .create(&Default::default(), &node)
            .await
            .expect("Node");
    }

    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let ready_at = ready_at.clone();
        let api: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(km)) = stream.next().await {
                if km.status.as_ref().is_some_and(|s| s.ready) {
                    let name = kube::ResourceExt::name_any(&km);
                    ready_at
                        .lock()
                        .expect("lock")
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counters(&manager);
    let started = Instant::now();
    eprintln!(
        "N={n}: Machines created from {} (UTC, as in the manager's log)",
        chrono::Utc::now().format("%H:%M:%S%.3f")
    );
    let creations = (0..n).map(|_| async {
        let t0 = Instant::now();
        let name = core
            .add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
            .await
            .expect("machine");
        (name, t0)
    });
    let created: Vec<(String, Instant)> = futures::future::join_all(creations).await;
    let deadline = Instant::now() + TIMEOUT;
    while ready_at.lock().expect("lock").len() < n {
        assert!(
            Instant::now() < deadline,
            "not every machine became ready within {TIMEOUT:?}:\n{}",
            manager.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = ready_at.lock().expect("lock").clone();
    let last = ready.values().max().copied().expect("ready");
    let wall = last.duration_since(started).as_secs_f64();
    let per_machine: Vec<f64> = created
        .iter()
        .map(|(name, t0)| ready[name].duration_since(*t0).as_secs_f64())
        .collect();
    // Let the reconciles that follow readiness (the Nodes' provider IDs) finish.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = counters(&manager);
    let pid = manager.child.id();
    eprintln!(
        "N={n}: {:.1} reconciles/machine; manager log kept in {}/capkind-bench-manager-{n}.log",
        (after.reconciles - before.reconciles) / n as f64,
        std::env::temp_dir().display()
    );
    eprint!(
        "N={n}: requests per machine\n{}",
        breakdown(&before, &after, n)
    );

    let steady = if steady {
        let minutes = 1.0;
        let start = counters(&manager);
        tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0)).await;
        let end = counters(&manager);
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
    let peak_rss_mib = proc_status_mib(pid, "VmHWM:");
    watch.abort();
    let kept = std::env::temp_dir().join(format!("capkind-bench-manager-{n}.log"));
    let _ = std::fs::copy(&manager.log, &kept);

    let deleting = Instant::now();
    core.delete().await.expect("delete the cluster");
    let delete_seconds = deleting.elapsed().as_secs_f64();
    let nf = n as f64;
    Provider {
        latencies: latencies(per_machine, wall),
        docker_calls: (after.docker - before.docker) / nf,
        api_writes: (after.writes - before.writes) / nf,
        peak_rss_mib,
        cpu_seconds: after.cpu - before.cpu,
        delete_seconds,
        steady,
    }
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

/// Arguments: the sizes (default 1 10 50), and `--rounds R` (default 3): each size is measured
/// R times, floor and provider one after the other, because on 2 cores one run's figures move
/// by a fifth from run to run.
#[tokio::main]
async fn main() {
    let mut rounds = 3usize;
    let mut sizes: Vec<usize> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|r| r.parse().ok())
                .filter(|r| *r > 0)
                .expect("--rounds takes a positive number");
        } else {
            sizes.push(arg.parse().expect("sizes are numbers (or --rounds R)"));
        }
    }
    if sizes.is_empty() {
        sizes = vec![1, 10, 50];
    }
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let server = shared();
    let _ = images();
    let workload = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("workload API server");

    println!("# capkind provisioning benchmark");
    println!(
        "machine: {} cores, {} MiB memory, kernel {}, Docker {}, kube-apiserver at {}",
        command("nproc", &[]),
        command("sh", &["-c", "free -m | awk '/Mem:/ {print $2}'"]),
        command("uname", &["-r"]),
        command("docker", &["version", "--format", "{{.Server.Version}}"]),
        server.url()
    );
    println!("manager: {}", capkind_test::process::binary().display());
    println!("rounds per size: {rounds}");
    println!();
    println!(
        "| N | round | floor p50 s | floor p95 s | floor wall s | capkind p50 s | capkind p95 s | capkind wall s | ratio p50 | ratio wall | Docker calls/machine | API writes/machine | peak RSS MiB | CPU s | delete s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut steady = None;
    let mut summary = Vec::new();
    for &n in &sizes {
        let (mut ratio_p50, mut ratio_wall) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let f = floor(n).await;
            let p = provider(n, &workload, n == largest && round == rounds).await;
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
            "steady state, {n} ready machines, over {} min: {:.0} API writes/min, {:.0} Docker calls/min, {:.0} reconciles/min, manager RSS {:.1} MiB",
            s.minutes, s.writes, s.docker_calls, s.reconciles, s.rss_mib
        );
    }
}
