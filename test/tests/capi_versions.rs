//! The manager binary against the Cluster API versions it must work with. The other suites
//! serve Cluster and Machine at v1beta1 only, as CAPI v1.10 does; here an API server of its
//! own serves them at v1beta2 only, as CAPI v1.11 to v1.15 store them (core's stand-in writes
//! the v1beta2 shape: `status.initialization`, references without a version), and another
//! serves no Cluster API at all.

use std::time::Duration;

use capkind_api::capi::Version;
use capkind_api::v1beta2::{KindCluster, KindMachine};
use capkind_test::core::{CONTROL_PLANE_BOOTSTRAP, CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::Janitor;
use capkind_test::fixtures::{
    is_ready, kind_spec, kindcluster_condition, kindmachine_condition, kindmachine_until,
    machine_spec,
};
use capkind_test::process::ManagerProcess;
use capkind_test::signals::{log_problems, warnings};
use capkind_test::{ApiServer, CapiCrds, names, wait};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

async fn own_server(capi: CapiCrds) -> ApiServer {
    tokio::task::spawn_blocking(move || ApiServer::start_with(capi))
        .await
        .expect("join")
        .expect("an API server of its own")
}

/// Waits until the KindCluster's Paused condition has `status`.
async fn paused_is(kcs: &Api<KindCluster>, name: &str, status: &str) {
    wait::until(
        &format!("KindCluster {name} Paused={status}"),
        Duration::from_secs(60),
        || async {
            let kc = kcs.get(name).await.map_err(|e| e.to_string())?;
            match kindcluster_condition(&kc, "Paused") {
                Some(c) if c.status == status => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_cluster_is_provisioned_through_v1beta2_only() {
    let server = own_server(CapiCrds::V1Beta2).await;
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let manager = ManagerProcess::start(&server, &["--namespace", &ns]);
    let (name, network) = (names::unique("v1b2"), names::unique("net"));
    let mut janitor = Janitor::default();
    janitor.track(format!("{name}-lb"));
    janitor.track_network(network.clone());
    let core = CoreCluster::create(&client, &ns, &name, kind_spec(&network), machine_spec())
        .await
        .expect("create the cluster");
    assert_eq!(
        core.capi,
        Version::V1Beta2,
        "core's stand-in writes v1beta2"
    );
    core.infrastructure_ready(READY_TIMEOUT).await;

    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    let control_plane = core
        .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
        .await
        .expect("control-plane machine");
    janitor.track(control_plane.clone());
    kindmachine_until(
        &kms,
        &control_plane,
        "control plane provisioned",
        READY_TIMEOUT,
        is_ready,
    )
    .await;

    // A worker waits for status.initialization.controlPlaneInitialized, then goes on.
    let worker = core
        .add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
        .await
        .expect("worker machine");
    janitor.track(worker.clone());
    let waiting = |km: &KindMachine| {
        kindmachine_condition(km, "ContainerProvisioned")
            .is_some_and(|c| c.reason == "WaitingForControlPlaneInitialized")
    };
    let what = "worker waiting for the control plane";
    kindmachine_until(&kms, &worker, what, Duration::from_secs(60), waiting).await;
    core.control_plane_initialized().await;
    kindmachine_until(&kms, &worker, "worker provisioned", READY_TIMEOUT, is_ready).await;

    // A v1beta2 MachinePool: its instances become ready and its provider IDs reach it.
    let pool = core
        .add_pool(
            "pool",
            2,
            "v1.31.0",
            TRIVIAL_BOOTSTRAP,
            json!({"template": machine_spec()}),
        )
        .await
        .expect("MachinePool");
    wait::until("the v1beta2 pool ready", READY_TIMEOUT, || async {
        let mp = pool
            .machine_pools()
            .get(&pool.name)
            .await
            .map_err(|e| e.to_string())?;
        let kmp = pool
            .kind_pools()
            .get(&pool.name)
            .await
            .map_err(|e| e.to_string())?;
        let ready = kmp
            .status
            .as_ref()
            .is_some_and(|s| s.ready && s.replicas == 2);
        if ready && mp.version() == Some(Version::V1Beta2) && mp.spec.provider_id_list.len() == 2 {
            Ok(())
        } else {
            Err(format!("{:?}", kmp.status))
        }
    })
    .await;
    pool.delete(READY_TIMEOUT).await.expect("delete the pool");

    // The Cluster's watch is a v1beta2 watch too: pausing it shows on the KindCluster.
    let kcs: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    let clusters = capkind_test::capi::clusters(&client, &ns, Version::V1Beta2);
    let pause = |paused: bool| Patch::Merge(json!({"spec": {"paused": paused}}));
    let pp = PatchParams::default();
    clusters
        .patch(&name, &pp, &pause(true))
        .await
        .expect("pause");
    paused_is(&kcs, &name, "True").await;
    clusters
        .patch(&name, &pp, &pause(false))
        .await
        .expect("unpause");
    paused_is(&kcs, &name, "False").await;

    let log = std::fs::read_to_string(&manager.log).expect("manager log");
    let chosen = log
        .lines()
        .find(|l| l.contains("reading Cluster API's Cluster and Machine"));
    assert!(
        chosen.is_some_and(|l| l.contains("INFO") && l.contains("as cluster.x-k8s.io/v1beta2,")),
        "{chosen:?}\n{}",
        manager.log_tail()
    );
    core.delete().await.expect("delete the cluster");
    assert_eq!(warnings(&client, &ns).await, vec![], "Warning events");
    assert_eq!(
        log_problems(&manager.log),
        Vec::<String>::new(),
        "WARN or ERROR lines"
    );
}

#[tokio::test]
async fn without_cluster_api_the_manager_exits_and_says_what_is_missing() {
    let server = own_server(CapiCrds::Absent).await;
    let mut manager = ManagerProcess::start(&server, &[]);
    let status = manager
        .wait_exit(Duration::from_secs(30), "start-up without Cluster API")
        .await;
    let log = manager.log_tail();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "Cluster API's CRDs (cluster.x-k8s.io Cluster, Machine) are not installed; run clusterctl init"
        ),
        "{log}"
    );
}
