//! Faults a user's environment has, with the manager binary against the real API server and
//! Docker:
//!
//! - the Docker engine unreachable in the middle of provisioning (its socket cut through a
//!   proxy, then restored): KindClusters and KindMachines show DockerUnavailable while it lasts;
//! - the management cluster's API server gone in the middle of provisioning (kube-apiserver
//!   killed, etcd kept, started again about 12 seconds later).
//!
//! In both, the same manager process recovers by itself, no container is created twice and no
//! node runs its bootstrap commands twice.

use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::{KindCluster, KindMachine};
use capkind_test::docker::{Janitor, SocketProxy, engine, sh};
use capkind_test::fixtures::{
    bootstrap_secret, is_ready, kindcluster_is_ready, kindmachine_until, machine_spec,
    machine_with_kindmachine, mark_cluster, ready_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, shared, wait};
use kube::ResourceExt;
use kube::api::Api;

/// The reasons of the object's v1beta2 conditions.
fn reasons(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Vec<String> {
    conditions.iter().map(|c| c.reason.clone()).collect()
}

/// The node file a slow worker's bootstrap appends a line to each time it runs.
const RUNS: &str = "/var/lib/capkind-test-runs";

/// A worker Machine and KindMachine `name` of `cluster` whose bootstrap takes a while (the
/// faults happen while it runs) and counts its runs in [`RUNS`]; its container is tracked by
/// `janitor`.
async fn slow_worker(
    client: &kube::Client,
    ns: &str,
    cluster: &str,
    name: &str,
    janitor: &mut Janitor,
) {
    janitor.track(name.to_string());
    let data = format!(
        "#cloud-config\nruncmd:\n- echo run >> {RUNS}\n- sleep 6\n\
         - mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n"
    );
    bootstrap_secret(client, ns, name, cluster, "cloud-config", &data).await;
    machine_with_kindmachine(client, ns, cluster, name, false, Some(name), machine_spec()).await;
}

/// Whether one of the KindMachine's v1beta2 conditions has the reason Bootstrapping.
fn is_bootstrapping(km: &KindMachine) -> bool {
    km.status
        .as_ref()
        .is_some_and(|v| reasons(&v.conditions).iter().any(|r| r == "Bootstrapping"))
}

/// Waits until the KindCluster `name` is ready.
async fn kindcluster_ready(clusters: &Api<KindCluster>, name: &str, what: &str) {
    wait::until(what, Duration::from_secs(60), || async {
        let kc = clusters.get(name).await.map_err(|e| e.to_string())?;
        if kindcluster_is_ready(&kc) {
            Ok(())
        } else {
            Err(format!("{:?}", kc.status))
        }
    })
    .await;
}

/// Asserts that the manager process is still the one started (it did not exit).
fn assert_running(manager: &mut ManagerProcess, when: &str) {
    assert!(
        manager.child.try_wait().expect("wait").is_none(),
        "the manager exited {when}:\n{}",
        manager.log_tail()
    );
}

/// Asserts that the node `name` ran its bootstrap commands exactly once, successfully.
async fn assert_bootstrapped_once(name: &str) {
    assert_eq!(
        sh(name, "cat /var/lib/capkind/state/bootstrap.status").await,
        "succeeded",
        "bootstrap status of {name}"
    );
    assert_eq!(
        sh(name, &format!("cat {RUNS}")).await,
        "run",
        "bootstrap runs on {name}"
    );
}

/// Waits until one of the KindMachines `names` is bootstrapping.
async fn one_bootstrapping(machines: &Api<KindMachine>, names: &[String]) {
    wait::until(
        "a worker bootstrapping",
        Duration::from_secs(90),
        || async {
            for name in names {
                let km = machines.get(name).await.map_err(|e| e.to_string())?;
                if is_bootstrapping(&km) {
                    return Ok(());
                }
            }
            Err("none yet".to_string())
        },
    )
    .await;
}

/// Asserts that the containers of `cluster` are its load balancer and the nodes `names`,
/// one each.
async fn assert_containers(cluster: &str, names: &[String]) {
    let mut containers = engine()
        .await
        .list(&[("io.x-k8s.kind.cluster", cluster)])
        .await
        .expect("list");
    containers.sort();
    let mut expected = names.to_vec();
    expected.push(format!("{cluster}-lb"));
    expected.sort();
    assert_eq!(containers, expected);
}

/// The IDs of those of the containers `names` that exist, by name.
async fn container_ids(names: &[String]) -> std::collections::BTreeMap<String, String> {
    let docker = engine().await;
    let mut ids = std::collections::BTreeMap::new();
    for name in names {
        if let Some(c) = docker.inspect(name).await.expect("inspect") {
            ids.insert(name.clone(), c.id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_mid_provisioning_is_shown_and_recovered_from() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let proxy = SocketProxy::start(server.dir());
    let host = format!("--docker-host=unix://{}", proxy.path.display());
    let mut manager = ManagerProcess::start(server, &["--namespace", &ns, &host]);
    let mut janitor = Janitor::default();
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    let cluster = kc.name_any();
    mark_cluster(&client, &ns, &cluster, true).await;

    // A worker whose bootstrap takes a while: the engine goes away while it runs.
    let name = format!("{cluster}-w");
    slow_worker(&client, &ns, &cluster, &name, &mut janitor).await;
    let machines: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    kindmachine_until(
        &machines,
        &name,
        "bootstrap running",
        Duration::from_secs(90),
        is_bootstrapping,
    )
    .await;

    proxy.cut();
    let unavailable = |conditions: Option<&Vec<_>>| {
        conditions.is_some_and(|c| reasons(c).iter().any(|r| r == "DockerUnavailable"))
    };
    kindmachine_until(
        &machines,
        &name,
        "KindMachine DockerUnavailable",
        Duration::from_secs(60),
        |km| unavailable(km.status.as_ref().map(|s| &s.conditions)),
    )
    .await;
    let clusters: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    wait::until(
        "KindCluster DockerUnavailable",
        Duration::from_secs(60),
        || async {
            let kc = clusters.get(&cluster).await.map_err(|e| e.to_string())?;
            let conditions = kc.status.as_ref().map(|s| &s.conditions);
            if unavailable(conditions) {
                Ok(())
            } else {
                Err(format!("{:?}", kc.status))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Back: everything ready again, by the same manager process, one container per name.
    proxy.restore();
    kindmachine_until(
        &machines,
        &name,
        "KindMachine ready again",
        Duration::from_secs(90),
        is_ready,
    )
    .await;
    kindcluster_ready(&clusters, &cluster, "KindCluster ready again").await;
    assert_running(&mut manager, "after the engine came back");
    assert_containers(&cluster, std::slice::from_ref(&name)).await;
    assert_bootstrapped_once(&name).await;
    manager.signal("TERM");
    manager.wait_exit(Duration::from_secs(30), "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_gone_mid_provisioning_is_recovered_from() {
    // An API server of its own: this one is stopped.
    let mut server = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("own API server");
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut manager = ManagerProcess::start(&server, &["--namespace", &ns]);
    let mut janitor = Janitor::default();
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    let cluster = kc.name_any();
    mark_cluster(&client, &ns, &cluster, true).await;

    // Workers whose bootstrap takes a while: the API server goes away while the first runs
    // and the others may still be created.
    let workers: Vec<String> = (1..=3).map(|i| format!("{cluster}-w{i}")).collect();
    for name in &workers {
        slow_worker(&client, &ns, &cluster, name, &mut janitor).await;
    }
    let machines: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    one_bootstrapping(&machines, &workers).await;
    // A container removed and created again under its name counts as created twice.
    let before = container_ids(&workers).await;

    let mut server = tokio::task::spawn_blocking(move || {
        server.stop_kube_apiserver();
        server
    })
    .await
    .expect("join");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_running(&mut manager, "while the API server was gone");
    let server = tokio::task::spawn_blocking(move || {
        server.start_kube_apiserver().expect("start kube-apiserver");
        server
    })
    .await
    .expect("join");

    // Back: everything ready, by the same manager process, with the containers it had.
    let client = server.client().await;
    let machines: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    for name in &workers {
        kindmachine_until(
            &machines,
            name,
            &format!("KindMachine {name} ready"),
            Duration::from_secs(120),
            is_ready,
        )
        .await;
    }
    let clusters: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    kindcluster_ready(&clusters, &cluster, "KindCluster ready after the outage").await;
    assert_running(&mut manager, "after the API server came back");
    assert_containers(&cluster, &workers).await;
    let after = container_ids(&workers).await;
    for (name, id) in &before {
        assert_eq!(after.get(name), Some(id), "container {name} was replaced");
    }
    for name in &workers {
        assert_bootstrapped_once(name).await;
    }
    manager.signal("TERM");
    manager.wait_exit(Duration::from_secs(30), "SIGTERM").await;
}
