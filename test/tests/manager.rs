//! The manager binary as an operator runs it, against the real API server and Docker: flags,
//! probes, metrics, leader election with failover, SIGTERM, an API server restart, the limit on
//! node containers made at once.

use std::process::Command;
use std::time::{Duration, Instant};

use capkind_api::v1beta2::{KindCluster, KindMachine};
use capkind_test::core::{CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::Janitor;
use capkind_test::fixtures::{
    cluster_with_kindcluster, is_ready, kind_spec, kindmachine_until, machine_spec, ready_cluster,
};
use capkind_test::process::{ManagerProcess, binary};
use capkind_test::{ApiServer, http, names, shared, wait};
use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

async fn wait_http(manager: &ManagerProcess, port: u16, path: &str) -> String {
    wait::until(path, Duration::from_secs(30), || async {
        let r = http::get(port, path);
        if http::is_ok(&r) {
            Ok(r)
        } else {
            Err(format!("{r}\nmanager log:\n{}", manager.log_tail()))
        }
    })
    .await
}

#[test]
fn bad_flags_exit_with_status_2_and_a_clear_message() {
    for (args, expected) in [
        (&["--sync-period=soon"][..], "--sync-period"),
        (
            &["--leader-elect-renew-deadline=20s"],
            "--leader-elect-renew-deadline must be shorter",
        ),
        (
            &["--kindmachine-concurrency=0"],
            "--kindmachine-concurrency",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ] {
        let out = Command::new(binary()).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = Command::new(binary())
        .arg("--version")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("capkind {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn probes_and_metrics_answer_and_count_work() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(server, &["--namespace", &ns]);
    wait_http(&manager, manager.health_port, "/healthz").await;
    wait_http(&manager, manager.health_port, "/readyz").await;
    let before = manager.metrics();
    assert!(
        before.contains("capkind_build_info{version=\"0.2.0\"} 1"),
        "{before}"
    );
    assert!(
        before.contains(
            "controller_runtime_max_concurrent_reconciles{controller=\"kindmachine\"} 100"
        ),
        "{before}"
    );
    assert!(before.contains("process_resident_memory_bytes"), "{before}");

    ready_cluster(&client, &ns, &mut janitor).await;
    let success =
        "controller_runtime_reconcile_total{controller=\"kindcluster\",result=\"success\"}";
    manager
        .wait_metric(success, 1.0, Duration::from_secs(10))
        .await;
    assert!(
        manager.metric("capkind_docker_requests_total{op=\"create\",result=\"success\"}") >= 1.0,
        "{}",
        manager.metrics()
    );
    assert!(
        manager.metrics().contains(
            "controller_runtime_reconcile_time_seconds_bucket{controller=\"kindcluster\""
        )
    );
    // The KindCluster's finalizer, endpoint and status were written with PATCH.
    assert!(
        manager.metric("rest_client_requests_total{code=\"200\",method=\"PATCH\"}") >= 2.0,
        "{}",
        manager.metrics()
    );
    assert_eq!(
        manager.metric("capkind_leader"),
        1.0,
        "without leader election the manager leads"
    );
}

#[tokio::test]
async fn one_leader_reconciles_and_the_other_takes_over() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let args = [
        "--namespace",
        &ns,
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        // Wide enough that a leader on a loaded 2-core machine keeps its Lease (4 s / 3 s
        // lost it in CI while another test started its own etcd and API server).
        "--leader-elect-lease-duration=8s",
        "--leader-elect-renew-deadline=6s",
        "--leader-elect-retry-period=1s",
    ];
    let mut managers = vec![
        ManagerProcess::start(server, &args),
        ManagerProcess::start(server, &args),
    ];
    let leader = wait::until("a leader", Duration::from_secs(30), || async {
        let leading: Vec<usize> = (0..2)
            .filter(|&i| managers[i].metric("capkind_leader") == 1.0)
            .collect();
        match leading.as_slice() {
            [one] => Ok(*one),
            other => Err(format!("leading: {other:?}")),
        }
    })
    .await;
    let standby = 1 - leader;
    ready_cluster(&client, &ns, &mut janitor).await;
    let reconciles =
        "controller_runtime_reconcile_total{controller=\"kindcluster\",result=\"success\"}";
    let logs = |managers: &[ManagerProcess]| {
        format!(
            "leader log:\n{}\nstandby log:\n{}",
            managers[leader].log_tail(),
            managers[standby].log_tail()
        )
    };
    assert_eq!(
        managers[leader].metric("capkind_leader"),
        1.0,
        "the leader lost its Lease\n{}",
        logs(&managers)
    );
    // The status that made the cluster ready is written inside the reconcile, and the
    // reconcile is counted when it returns: a moment later.
    managers[leader]
        .wait_metric(reconciles, 1.0, Duration::from_secs(10))
        .await;
    assert_eq!(
        managers[standby].metric(reconciles),
        0.0,
        "the standby reconciled\n{}",
        logs(&managers)
    );
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
        .get("controller-leader-election-capkind")
        .await
        .expect("lease");
    assert!(
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .is_some_and(|h| !h.is_empty())
    );

    // The leader dies without releasing the Lease: the standby takes over after it expires.
    managers[leader].signal("KILL");
    let killed = Instant::now();
    wait::until("the standby leads", Duration::from_secs(30), || async {
        if managers[standby].metric("capkind_leader") == 1.0 {
            Ok(())
        } else {
            Err(managers[standby].log_tail())
        }
    })
    .await;
    assert!(
        // One lease duration (8 s) after the last renewal, plus a retry period and slack.
        killed.elapsed() < Duration::from_secs(16),
        "took over only after {:?}",
        killed.elapsed()
    );
    ready_cluster(&client, &ns, &mut janitor).await;
    assert!(managers[standby].metric(reconciles) >= 1.0);
    managers.clear();
}

#[tokio::test]
async fn sigterm_finishes_releases_the_lease_and_exits_0() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let mut manager = ManagerProcess::start(
        server,
        &[
            "--namespace",
            &ns,
            "--leader-elect",
            "--leader-election-namespace",
            &ns,
            "--shutdown-timeout=10s",
        ],
    );
    ready_cluster(&client, &ns, &mut janitor).await;
    let lb_count = || {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=capkind.x-k8s.io/owner-namespace={ns}"),
            ])
            .output();
        String::from_utf8_lossy(&out.expect("docker").stdout)
            .lines()
            .count()
    };
    // More work in flight when the signal arrives.
    let name = names::unique("c");
    janitor.track(format!("{name}-lb"));
    cluster_with_kindcluster(&client, &ns, &name, false, kind_spec(&names::unique("net"))).await;
    manager.signal("TERM");
    let status = manager.wait_exit(Duration::from_secs(15), "SIGTERM").await;
    assert_eq!(status.code(), Some(0), "{}", manager.log_tail());
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
        .get("controller-leader-election-capkind")
        .await
        .expect("lease");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.is_empty(), "the Lease is still held by {holder}");
    // Nothing half-done: every container the manager made is running.
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=capkind.x-k8s.io/owner-namespace={ns}"),
            "--format",
            "{{.Names}} {{.State}}",
        ])
        .output()
        .expect("docker");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listing.lines().all(|l| l.ends_with("running")), "{listing}");
    assert!(lb_count() >= 1);
}

#[tokio::test]
async fn reconciling_resumes_after_an_api_server_restart() {
    let mut server = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("own API server");
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(&server, &["--namespace", &ns]);
    ready_cluster(&client, &ns, &mut janitor).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart_kube_apiserver().expect("restart");
        server
    })
    .await
    .expect("join");
    let client = server.client().await;
    ready_cluster(&client, &ns, &mut janitor).await;
    assert!(manager.child.id() > 0);
    drop(manager);
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops_at_once() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let args = [
        "--namespace",
        &ns,
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--leader-elect-lease-duration=6s",
        "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=1s",
    ];
    let mut manager = ManagerProcess::start(server, &args);
    wait::until("leadership", Duration::from_secs(30), || async {
        if manager.metric("capkind_leader") == 1.0 {
            Ok(())
        } else {
            Err(manager.log_tail())
        }
    })
    .await;
    // Someone else takes the Lease (an operator, or a partition healing the wrong way).
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let mut lease = leases
        .get("controller-leader-election-capkind")
        .await
        .expect("lease");
    let spec = lease.spec.as_mut().expect("spec");
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    leases
        .replace(
            "controller-leader-election-capkind",
            &Default::default(),
            &lease,
        )
        .await
        .expect("take the lease");
    let status = manager
        .wait_exit(Duration::from_secs(10), "losing the Lease")
        .await;
    assert_eq!(status.code(), Some(1), "{}", manager.log_tail());
    assert!(
        manager.log_tail().contains("lost"),
        "{}",
        manager.log_tail()
    );
}

#[tokio::test]
async fn watch_filter_limits_what_is_reconciled() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(server, &["--namespace", &ns, "--watch-filter", "mine"]);
    wait_http(&manager, manager.health_port, "/readyz").await;
    let kcs: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    let mut names_by_label = Vec::new();
    for label in ["mine", "theirs"] {
        let name = names::unique("c");
        janitor.track(format!("{name}-lb"));
        let (_, kc) =
            cluster_with_kindcluster(&client, &ns, &name, false, kind_spec(&names::unique("net")))
                .await;
        let patch =
            serde_json::json!({"metadata": {"labels": {"cluster.x-k8s.io/watch-filter": label}}});
        kcs.patch(
            &kc.metadata.name.clone().expect("name"),
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("label");
        names_by_label.push(name);
    }
    wait::until(
        "the filtered KindCluster ready",
        Duration::from_secs(60),
        || async {
            let kc = kcs
                .get(&names_by_label[0])
                .await
                .map_err(|e| e.to_string())?;
            if kc.provisioned() {
                Ok(())
            } else {
                Err(format!("{:?}", kc.status))
            }
        },
    )
    .await;
    let other = kcs.get(&names_by_label[1]).await.expect("get");
    assert!(
        other.status.is_none() && other.metadata.finalizers.is_none(),
        "reconciled despite the filter: {other:?}"
    );
}

/// Waits until the manager's log has a line containing `needle`; returns the whole log.
async fn log_with(manager: &ManagerProcess, needle: &str) -> String {
    wait::until(needle, Duration::from_secs(30), || async {
        let log = std::fs::read_to_string(&manager.log).map_err(|e| e.to_string())?;
        if log.contains(needle) {
            Ok(log)
        } else {
            Err(manager.log_tail())
        }
    })
    .await
}

#[tokio::test]
async fn a_log_written_to_a_file_has_no_terminal_colours() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(server, &["--namespace", &ns, "-v"]);
    ready_cluster(&client, &ns, &mut janitor).await;
    // A line logged inside a reconcile: the span's fields are written too.
    let log = log_with(&manager, "load balancer created").await;
    let line = log
        .lines()
        .find(|l| l.contains("load balancer created"))
        .expect("line");
    assert!(line.contains("controller") && line.contains(&ns), "{line}");
    assert!(
        !log.contains('\x1b'),
        "terminal escapes in a log file:\n{}",
        log.replace('\x1b', "<ESC>")
    );
}

#[tokio::test]
async fn json_logs_use_controller_runtimes_keys() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(server, &["--namespace", &ns, "--log-format", "json"]);
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    let log = log_with(&manager, "load balancer created").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["ts", "level", "msg", "logger"] {
            assert!(line[key].is_string(), "no {key}: {line}");
        }
        assert!(
            line.get("timestamp").is_none() && line.get("fields").is_none(),
            "tracing's own keys: {line}"
        );
        let ts = line["ts"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "ts is not RFC 3339: {line}"
        );
    }
    let created = lines
        .iter()
        .find(|l| l["msg"] == "load balancer created")
        .expect("the line");
    let name = kc.metadata.name.as_deref().expect("name");
    assert_eq!(created["level"], "info", "{created}");
    assert_eq!(created["controller"], "kindcluster", "{created}");
    assert_eq!(
        created["controllerGroup"], "infrastructure.cluster.x-k8s.io",
        "{created}"
    );
    assert_eq!(created["controllerKind"], "KindCluster", "{created}");
    assert_eq!(created["namespace"], ns.as_str(), "{created}");
    assert_eq!(created["name"], name, "{created}");
    assert_eq!(
        created["KindCluster"],
        serde_json::json!({"name": name, "namespace": ns}),
        "{created}"
    );
    assert_eq!(
        created["reconcileID"].as_str().map(str::len),
        Some(36),
        "{created}"
    );
    assert!(
        created["caller"]
            .as_str()
            .is_some_and(|c| c.starts_with("src/controllers/kindcluster/")),
        "{created}"
    );
}

/// When Docker created and started the container `name` (its own timestamps).
fn created_and_started(name: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.Created}} {{.State.StartedAt}}",
            name,
        ])
        .output()
        .expect("docker inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<DateTime<Utc>> = text
        .split_whitespace()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .unwrap_or_else(|e| panic!("{name}: {t:?}: {e}"))
                .with_timezone(&Utc)
        })
        .collect();
    assert_eq!(times.len(), 2, "{name}: {text}");
    (times[0], times[1])
}

/// `--node-start-concurrency 1`: machines reconciled side by side still get their node
/// containers one at a time (each created and started before Docker is asked for the next),
/// and every one of them becomes ready.
#[tokio::test]
async fn node_start_concurrency_makes_node_containers_one_at_a_time() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(
        server,
        &["--namespace", &ns, "--node-start-concurrency", "1"],
    );
    wait_http(&manager, manager.health_port, "/readyz").await;
    let (name, network) = (names::unique("one"), names::unique("net"));
    janitor.track(format!("{name}-lb"));
    janitor.track_network(network.clone());
    let core = CoreCluster::create(&client, &ns, &name, kind_spec(&network), machine_spec())
        .await
        .expect("create the cluster");
    core.infrastructure_ready(Duration::from_secs(120)).await;
    core.control_plane_initialized().await;
    let workers: Vec<String> = futures::future::join_all(
        (0..3).map(|_| core.add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)),
    )
    .await
    .into_iter()
    .map(|w| w.expect("worker machine"))
    .collect();
    let containers: Vec<String> = workers
        .iter()
        .map(|w| capkind::node::container_name(&name, w))
        .collect();
    for c in &containers {
        janitor.track(c.clone());
    }
    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    for w in &workers {
        kindmachine_until(&kms, w, "worker ready", Duration::from_secs(180), is_ready).await;
    }
    let mut times: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = containers
        .into_iter()
        .map(|c| {
            let (created, started) = created_and_started(&c);
            (c, created, started)
        })
        .collect();
    times.sort_by_key(|t| t.1);
    for pair in times.windows(2) {
        let ((a, _, a_started), (b, b_created, _)) = (&pair[0], &pair[1]);
        assert!(
            b_created >= a_started,
            "{b} was created at {b_created} while {a} was not started yet ({a_started}): {times:?}"
        );
    }
}
