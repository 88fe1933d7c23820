//! Clean signals, with the manager binary against the real API server, Docker and haproxy: a
//! failure reaches the user whole (condition, Warning event within the API's limit, log line),
//! and a normal deletion, even under concurrent writes to the objects, raises no warning, no
//! reconcile error and no WARN or ERROR log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capkind_api::v1beta2::{KindCluster, KindMachine};
use capkind_test::docker::Janitor;
use capkind_test::fixtures::{
    bootstrap_secret, is_ready, kindmachine_condition, kindmachine_until, machine_spec,
    machine_with_kindmachine, mark_cluster, ready_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::signals::{log_problems, warnings};
use capkind_test::{names, shared, wait};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

const SENTINEL_CMD: &str =
    "mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete";

struct Env {
    client: Client,
    ns: String,
    cluster: String,
    janitor: Janitor,
    manager: ManagerProcess,
}

async fn env() -> Env {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut janitor = Janitor::default();
    let manager = ManagerProcess::start(server, &["--namespace", &ns]);
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    mark_cluster(&client, &ns, &kc.name_any(), true).await;
    Env {
        client,
        ns,
        cluster: kc.name_any(),
        janitor,
        manager,
    }
}

impl Env {
    async fn worker(&mut self, cloud_config: &str) -> String {
        let name = format!(
            "{}-w{}",
            self.cluster,
            &names::unique("m")[names::token().len()..]
        );
        let secret = format!("{name}-bootstrap");
        bootstrap_secret(
            &self.client,
            &self.ns,
            &secret,
            &self.cluster,
            "cloud-config",
            cloud_config,
        )
        .await;
        machine_with_kindmachine(
            &self.client,
            &self.ns,
            &self.cluster,
            &name,
            false,
            Some(&secret),
            machine_spec(),
        )
        .await;
        self.janitor.track(name.clone());
        name
    }

    fn reconcile_errors(&self) -> f64 {
        ["kindmachine", "kindcluster"]
            .iter()
            .map(|c| {
                self.manager.metric(&format!(
                    "controller_runtime_reconcile_errors_total{{controller=\"{c}\"}}"
                ))
            })
            .sum()
    }
}

/// The BootstrapExecSucceeded condition's reason and message.
fn bootstrap_condition(km: &KindMachine) -> Option<(String, String)> {
    kindmachine_condition(km, "BootstrapExecSucceeded").map(|c| (c.reason, c.message))
}

/// A step that prints 200 lines (about 9 KB) then fails: the condition keeps the command, its
/// exit code and the last lines whole; the Warning event holds what fits in 1024 bytes, cut at
/// line boundaries and marked; the log has the failure; no event was refused.
#[tokio::test]
async fn a_failing_bootstrap_with_long_output_reaches_the_user_in_whole_lines() {
    let mut e = env().await;
    let step = "for i in $(seq 1 200); do echo \"output line $i of a long and chatty bootstrap step\"; done; exit 1";
    let name = e
        .worker(&format!("#cloud-config\nruncmd:\n- '{step}'\n"))
        .await;
    let machines: Api<KindMachine> = Api::namespaced(e.client.clone(), &e.ns);
    let km = kindmachine_until(
        &machines,
        &name,
        "bootstrap failure",
        Duration::from_secs(90),
        |km| bootstrap_condition(km).is_some_and(|(r, _)| r == "BootstrapFailed"),
    )
    .await;
    let (_, message) = bootstrap_condition(&km).expect("condition");
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        format!("command {step:?} exited with 1; the last lines of its output:"),
        "{message}"
    );
    let expected: Vec<String> = (191..=200)
        .map(|i| format!("output line {i} of a long and chatty bootstrap step"))
        .collect();
    assert_eq!(lines[1..], expected, "{message}");

    let warning = wait::until("the BootstrapFailed event", Duration::from_secs(30), || {
        let (client, ns, name) = (e.client.clone(), e.ns.clone(), name.clone());
        async move {
            warnings(&client, &ns)
                .await
                .into_iter()
                .find(|w| {
                    w.reason == "BootstrapFailed" && w.regarding == format!("KindMachine/{name}")
                })
                .ok_or_else(|| "no such event".to_string())
        }
    })
    .await;
    assert!(warning.note.len() <= 1024, "{} bytes", warning.note.len());
    let note: Vec<&str> = warning.note.lines().collect();
    assert_eq!(
        note[0], lines[0],
        "the note starts with the failing command"
    );
    assert_eq!(
        note.last(),
        lines.last(),
        "the note ends with the last output line"
    );
    for line in &note[1..] {
        assert!(
            expected.iter().any(|l| l == line) || line.ends_with("cut]"),
            "a line of the note is not a whole line of the output: {line:?}"
        );
    }
    assert_eq!(
        e.manager
            .metric("capkind_events_refused_total{reason=\"BootstrapFailed\"}"),
        0.0,
        "an event was refused"
    );
    let problems = log_problems(&e.manager.log);
    assert!(
        problems
            .iter()
            .any(|l| l.contains("bootstrap failed") && l.contains("output line 200")),
        "the log does not report the failure: {problems:?}"
    );
}

/// Deleting ready objects while someone else keeps writing to them (as Cluster API core does
/// with labels and annotations) is a normal run: no conflict surfaces anywhere.
#[tokio::test]
async fn deletion_under_concurrent_writes_raises_no_warning_and_no_error() {
    let mut e = env().await;
    let name = e
        .worker(&format!("#cloud-config\nruncmd:\n- {SENTINEL_CMD}\n"))
        .await;
    let machines: Api<KindMachine> = Api::namespaced(e.client.clone(), &e.ns);
    kindmachine_until(
        &machines,
        &name,
        "KindMachine ready",
        Duration::from_secs(90),
        is_ready,
    )
    .await;

    // Another writer bumps both objects' resourceVersion every few milliseconds.
    let stop = Arc::new(AtomicBool::new(false));
    let clusters: Api<KindCluster> = Api::namespaced(e.client.clone(), &e.ns);
    let writer = {
        let (stop, machines, clusters) = (stop.clone(), machines.clone(), clusters.clone());
        let (machine, cluster) = (name.clone(), e.cluster.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let patch = serde_json::json!({"metadata": {"annotations": {"example.com/tick": n.to_string()}}});
                let _ = machines
                    .patch(&machine, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                let _ = clusters
                    .patch(&cluster, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    machines
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete KindMachine");
    wait::deleted(&machines, &name, Duration::from_secs(60)).await;
    clusters
        .delete(&e.cluster, &DeleteParams::default())
        .await
        .expect("delete KindCluster");
    wait::deleted(&clusters, &e.cluster, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.expect("writer");
    assert!(writes > 10, "only {writes} concurrent writes");

    assert_eq!(warnings(&e.client, &e.ns).await, [], "Warning events");
    assert_eq!(e.reconcile_errors(), 0.0, "reconcile errors");
    assert_eq!(
        log_problems(&e.manager.log),
        Vec::<String>::new(),
        "WARN or ERROR log lines"
    );
}
