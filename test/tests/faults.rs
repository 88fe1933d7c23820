//! Faults a user's environment has, with the manager binary against the real API server and
//! Docker: the Docker engine unreachable in the middle of provisioning (its socket cut through a
//! proxy, then restored). KindClusters and KindMachines show DockerUnavailable while it lasts,
//! the same manager process recovers by itself, and no container is created twice.

use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::{KindCluster, KindMachine};
use capkind_test::docker::{Janitor, SocketProxy, engine};
use capkind_test::fixtures::{
    bootstrap_secret, is_ready, kindcluster_is_ready, kindmachine_until, machine_spec,
    machine_with_kindmachine, mark_cluster, ready_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::{shared, wait};
use kube::ResourceExt;
use kube::api::Api;

/// The reasons of the object's v1beta2 conditions.
fn reasons(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> Vec<String> {
    conditions.iter().map(|c| c.reason.clone()).collect()
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
    janitor.track(name.clone());
    let data = "#cloud-config\nruncmd:\n- sleep 6\n- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";
    bootstrap_secret(&client, &ns, &name, &cluster, "cloud-config", data).await;
    machine_with_kindmachine(
        &client,
        &ns,
        &cluster,
        &name,
        false,
        Some(&name),
        machine_spec(),
    )
    .await;
    let machines: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    kindmachine_until(
        &machines,
        &name,
        "bootstrap running",
        Duration::from_secs(90),
        |km| {
            km.status
                .as_ref()
                .and_then(|s| s.v1beta2.as_ref())
                .is_some_and(|v| reasons(&v.conditions).iter().any(|r| r == "Bootstrapping"))
        },
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
        |km| {
            unavailable(
                km.status
                    .as_ref()
                    .and_then(|s| s.v1beta2.as_ref())
                    .map(|v| &v.conditions),
            )
        },
    )
    .await;
    let clusters: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    wait::until(
        "KindCluster DockerUnavailable",
        Duration::from_secs(60),
        || async {
            let kc = clusters.get(&cluster).await.map_err(|e| e.to_string())?;
            let conditions = kc
                .status
                .as_ref()
                .and_then(|s| s.v1beta2.as_ref())
                .map(|v| &v.conditions);
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
    wait::until(
        "KindCluster ready again",
        Duration::from_secs(60),
        || async {
            let kc = clusters.get(&cluster).await.map_err(|e| e.to_string())?;
            let ready = kindcluster_is_ready(&kc);
            if ready {
                Ok(())
            } else {
                Err(format!("{:?}", kc.status))
            }
        },
    )
    .await;
    assert!(
        manager.child.try_wait().expect("wait").is_none(),
        "the manager exited:\n{}",
        manager.log_tail()
    );
    let docker = engine().await;
    let mut containers = docker
        .list(&[("io.x-k8s.kind.cluster", cluster.as_str())])
        .await
        .expect("list");
    containers.sort();
    assert_eq!(containers, [format!("{cluster}-lb"), name.clone()]);
    let runs = docker
        .exec(
            &name,
            &["sh", "-c", "cat /var/lib/capkind/state/bootstrap.status"],
            None,
        )
        .await
        .expect("exec");
    assert_eq!(String::from_utf8_lossy(&runs.stdout).trim(), "succeeded");
    manager.signal("TERM");
    manager.wait_exit(Duration::from_secs(30), "SIGTERM").await;
}
