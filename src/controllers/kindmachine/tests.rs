//! Whole reconciles of a KindMachine against the in-memory engine (docker::fake) and API server
//! (controllers::testing): what a user sees in the status, the events and Docker after each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use capkind_api::capi::Version;
use capkind_api::v1beta2::KindMachine;
use serde_json::{Value, json};

use super::{Cache, Machines, bootstrap, reconcile};
use crate::controllers::testing::{FakeApi, path};
use crate::controllers::{Context, Error};
use crate::docker::fake::Fake;
use crate::docker::{self, ContainerRuntime};
use crate::node::Privileges;

const NODE: &str = "c-m";
const GROUP: &str = "infrastructure.cluster.x-k8s.io";
const INFRA: &str = "infrastructure.cluster.x-k8s.io/v1beta2";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A Cluster `c` (its infrastructure ready or not), its KindCluster, a worker Machine `m` with
/// bootstrap data, and its KindMachine; the Cluster API objects in `version`'s shape.
fn objects(api: &FakeApi, version: Version, infrastructure_ready: bool) {
    let core = version.api_version();
    let meta = |name: &str| json!({"name": name, "namespace": "ns", "uid": format!("uid-{name}")});
    let initialized = json!({"type": "ControlPlaneInitialized", "status": "True",
                             "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let (cluster_spec, cluster_status, machine_ref) = match version {
        Version::V1Beta1 => (
            json!({"infrastructureRef": {"apiVersion": INFRA, "kind": "KindCluster", "name": "c"}}),
            json!({"infrastructureReady": infrastructure_ready, "conditions": [initialized]}),
            json!({"apiVersion": INFRA, "kind": "KindMachine", "name": "m"}),
        ),
        Version::V1Beta2 => (
            json!({"infrastructureRef": {"apiGroup": GROUP, "kind": "KindCluster", "name": "c"}}),
            json!({"initialization": {"infrastructureProvisioned": infrastructure_ready,
                                      "controlPlaneInitialized": true},
                   "conditions": [initialized]}),
            json!({"apiGroup": GROUP, "kind": "KindMachine", "name": "m"}),
        ),
    };
    api.put(
        json!({"apiVersion": core, "kind": "Cluster", "metadata": meta("c"),
                   "spec": cluster_spec, "status": cluster_status}),
    );
    api.put(
        json!({"apiVersion": INFRA, "kind": "KindCluster", "metadata": meta("c"),
        "spec": {"network": "net"}}),
    );
    let mut machine = meta("m");
    machine["labels"] = json!({"cluster.x-k8s.io/cluster-name": "c"});
    api.put(
        json!({"apiVersion": core, "kind": "Machine", "metadata": machine,
        "spec": {"clusterName": "c", "bootstrap": {"dataSecretName": "m-bootstrap"},
                 "infrastructureRef": machine_ref}}),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("m-bootstrap"),
        "data": {"value": b64("#cloud-config\nruncmd:\n- echo hi\n"), "format": b64("cloud-config")}}));
    let mut km = meta("m");
    km["ownerReferences"] =
        json!([{"apiVersion": core, "kind": "Machine", "name": "m", "uid": "uid-m"}]);
    api.put(
        json!({"apiVersion": INFRA, "kind": "KindMachine", "metadata": km,
        "spec": {"customImage": "node:test", "bootstrapTimeout": "60s"}}),
    );
}

struct Env {
    api: FakeApi,
    docker: Fake,
    machines: Arc<Machines<Fake>>,
    _wakes: Mutex<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>,
}

fn env(infrastructure_ready: bool) -> Env {
    env_at(Version::V1Beta1, infrastructure_ready)
}

/// The objects of [`objects`] in `version`'s shape, read through `version`.
fn env_at(version: Version, infrastructure_ready: bool) -> Env {
    let api = FakeApi::default();
    objects(&api, version, infrastructure_ready);
    let docker = Fake::default().with_image("node:test", &["/sbin/init"]);
    let ctx = Context::new(
        api.client(),
        docker.clone(),
        "kindmachine",
        Duration::from_secs(600),
    )
    .with_capi(version);
    let (wake, wakes) = tokio::sync::mpsc::unbounded_channel();
    let machines = Arc::new(Machines {
        ctx: Arc::new(ctx),
        privileges: Privileges::Capabilities,
        cache: Cache::empty(version),
        nodes_done: Mutex::default(),
        waiter: bootstrap::Waiter::default(),
        wake,
        starting: Some(tokio::sync::Semaphore::new(1)),
    });
    Env {
        api,
        docker,
        machines,
        _wakes: Mutex::new(wakes),
    }
}

impl Env {
    fn km_path(&self) -> String {
        path(INFRA, "KindMachine", "ns", "m")
    }

    fn km(&self) -> Option<Value> {
        self.api.get(&self.km_path())
    }

    async fn reconcile(&self) -> Result<kube::runtime::controller::Action, Error> {
        let km: KindMachine =
            serde_json::from_value(self.km().expect("KindMachine")).expect("KindMachine");
        let result = reconcile(Arc::new(km), self.machines.clone()).await;
        // Let the bootstrap's waiter task report what it saw.
        tokio::time::sleep(Duration::from_millis(50)).await;
        result
    }

    /// The v1beta2 condition `type_`: (status, reason).
    fn condition(&self, type_: &str) -> (String, String) {
        let km = self.km().expect("KindMachine");
        let conditions = km
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned();
        let c = conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition: {km}"));
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (s("status"), s("reason"))
    }

    fn count(&self, call: &str) -> usize {
        self.docker
            .calls()
            .iter()
            .filter(|c| c.as_str() == call)
            .count()
    }

    /// What the node says of its bootstrap, from now on.
    fn node_reports(&self, report: &str) {
        self.docker.on_exec("bootstrap.status", 0, report);
    }

    /// Reconciles a machine of a ready cluster until it is provisioned.
    async fn provisioned(&self) {
        self.node_reports("1 0 running 1\n");
        self.reconcile().await.expect("create");
        self.node_reports("3 1 succeeded 1\n");
        self.reconcile().await.expect("running");
        self.reconcile().await.expect("succeeded");
        assert_eq!(self.condition("Ready").0, "True");
    }
}

/// The container is looked at beside the bootstrap's upload: one that died as it started gets
/// no bootstrap launched, and the next look reports it exited.
#[tokio::test]
async fn a_node_that_dies_as_it_starts_gets_no_bootstrap_and_is_reported() {
    let e = env(true);
    e.docker.die_on_start();
    e.reconcile().await.expect("reconcile");
    let node = e
        .docker
        .container(NODE)
        .expect("the container is kept, to say why");
    assert!(!node.running);
    assert_eq!(e.count("exec c-m"), 0, "{:?}", e.docker.calls());
    e.reconcile().await.expect("reconcile");
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "ContainerExited".into())
    );
    assert_eq!(e.count("exec c-m"), 0, "{:?}", e.docker.calls());
    assert_eq!(e.count("create c-m"), 1, "{:?}", e.docker.calls());
}

#[tokio::test]
async fn waits_creates_bootstraps_once_and_is_ready() {
    let e = env(false);
    e.reconcile().await.expect("reconcile");
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "WaitingForClusterInfrastructure".into())
    );
    assert_eq!(e.count("create c-m"), 0);
    let finalizers = e
        .km()
        .and_then(|k| k.pointer("/metadata/finalizers").cloned());
    assert_eq!(finalizers, Some(json!([super::FINALIZER])));

    objects(&e.api, Version::V1Beta1, true);
    e.node_reports("1 0 running 1\n");
    e.reconcile().await.expect("reconcile");
    let node = e.docker.container(NODE).expect("node container");
    assert!(node.running);
    assert_eq!(e.count("upload c-m /"), 1, "{:?}", e.docker.calls());
    assert_eq!(
        e.condition("BootstrapExecSucceeded"),
        ("False".into(), "Bootstrapping".into())
    );
    let events = e.api.events();
    for reason in ["ContainerCreated", "BootstrapStarted"] {
        assert!(
            events.contains(&("Normal".into(), reason.into())),
            "{events:?}"
        );
    }

    e.node_reports("3 1 succeeded 1\n");
    e.reconcile().await.expect("reconcile");
    e.reconcile().await.expect("reconcile");
    let km = e.km().expect("KindMachine");
    assert_eq!(
        km.pointer("/spec/providerID"),
        Some(&json!("kind://c/kind/c-m"))
    );
    assert_eq!(
        km.pointer("/status/initialization/provisioned"),
        Some(&json!(true))
    );
    assert_eq!(
        km.pointer("/status/addresses/1/address"),
        Some(&json!(
            node.networks["net"].ipv4.clone().expect("fixed address")
        ))
    );
    assert_eq!(e.condition("Ready"), ("True".into(), "Ready".into()));

    // Done is done: nothing inside the node is looked at again, nothing is started again.
    let execs = e.count("exec c-m");
    e.reconcile().await.expect("reconcile");
    assert_eq!(e.count("exec c-m"), execs);
    assert_eq!((e.count("create c-m"), e.count("upload c-m /")), (1, 1));
}

#[tokio::test]
async fn deletion_removes_the_container_then_the_finalizer() {
    let e = env(true);
    e.provisioned().await;
    let mut km = e.km().expect("KindMachine");
    km["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
    e.api.put(km);
    e.reconcile().await.expect("delete");
    assert!(e.docker.container(NODE).is_none(), "the container is left");
    assert!(e.km().is_none(), "the finalizer is left");
    assert!(
        e.api
            .events()
            .contains(&("Normal".into(), "ContainerDeleted".into()))
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_shown_and_nothing_is_created_twice() {
    let e = env(true);
    e.docker.set_unavailable(true);
    let error = e.reconcile().await.expect_err("Docker is away");
    assert!(matches!(
        error,
        Error::Docker(docker::Error::Unavailable { .. })
    ));
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "DockerUnavailable".into())
    );
    assert!(
        e.api
            .events()
            .contains(&("Warning".into(), "DockerUnavailable".into()))
    );
    e.docker.set_unavailable(false);
    e.provisioned().await;
    assert_eq!(e.count("create c-m"), 1);
}

#[tokio::test]
async fn a_node_that_dies_during_boot_is_shown_and_kept() {
    let e = env(true);
    e.node_reports("1 0 running 1\n");
    e.reconcile().await.expect("create");
    e.docker.change(NODE, |c| {
        c.running = false;
        c.state = "restarting".into();
        c.exit_code = 3;
        c.restart_count = 2;
    });
    e.reconcile().await.expect("reconcile");
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "ContainerExited".into())
    );
    assert!(
        e.api
            .events()
            .contains(&("Warning".into(), "ContainerExited".into()))
    );
    assert!(e.docker.container(NODE).is_some());
    assert_eq!((e.count("create c-m"), e.count("remove c-m")), (1, 0));
}

#[tokio::test]
async fn a_provisioned_node_whose_container_went_is_reported_not_replaced() {
    let e = env(true);
    e.provisioned().await;
    e.docker.remove(NODE).await.expect("remove by hand");
    e.reconcile().await.expect("reconcile");
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "ContainerDeleted".into())
    );
    assert!(e.docker.container(NODE).is_none(), "re-created");
}

#[tokio::test]
async fn a_failed_bootstrap_is_shown_once_and_not_run_again() {
    let e = env(true);
    e.node_reports("1 0 running 1\n");
    e.reconcile().await.expect("create");
    e.node_reports("2 1 failed 1\n1\ncommand \"echo hi\"\nno\n");
    e.reconcile().await.expect("running");
    e.reconcile().await.expect("failed");
    e.reconcile().await.expect("again");
    assert_eq!(
        e.condition("BootstrapExecSucceeded"),
        ("False".into(), "BootstrapFailed".into())
    );
    let warnings = e
        .api
        .events()
        .into_iter()
        .filter(|(t, r)| t == "Warning" && r == "BootstrapFailed")
        .count();
    assert_eq!(warnings, 1);
    assert_eq!(e.count("upload c-m /"), 1);
}

#[tokio::test]
async fn a_paused_machine_is_left_alone() {
    for version in Version::ALL {
        let e = env_at(version, true);
        let cluster_path = path(&version.api_version(), "Cluster", "ns", "c");
        let mut cluster = e.api.get(&cluster_path).expect("Cluster");
        cluster["spec"]["paused"] = json!(true);
        e.api.put(cluster);
        e.reconcile().await.expect("reconcile");
        assert_eq!(
            e.condition("Paused"),
            ("True".into(), "Paused".into()),
            "{version}"
        );
        assert!(e.docker.calls().is_empty(), "{:?}", e.docker.calls());
    }
}

/// The Cluster API objects exist only at v1beta2's paths (the fake API keys objects by
/// apiVersion), as in a CAPI release that no longer serves v1beta1: read through v1beta1, the
/// Machine would not be found.
#[tokio::test]
async fn a_v1beta2_cluster_and_machine_are_read_through_v1beta2() {
    let e = env_at(Version::V1Beta2, false);
    e.reconcile().await.expect("reconcile");
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "WaitingForClusterInfrastructure".into())
    );
    objects(&e.api, Version::V1Beta2, true);
    e.provisioned().await;
    let km = e.km().expect("KindMachine");
    assert_eq!(
        km.pointer("/spec/providerID"),
        Some(&json!("kind://c/kind/c-m"))
    );
}

#[tokio::test]
async fn a_missing_node_image_is_pulled_once_then_the_node_created() {
    let e = env(true);
    let mut km = e.km().expect("KindMachine");
    km["spec"]["customImage"] = json!("reg.example/node:v1");
    e.api.put(km);
    let _ = e
        .docker
        .clone()
        .in_registry("reg.example/node:v1", Ok(&["/sbin/init"]));
    let gate = e.docker.hold_pulls();
    for _ in 0..2 {
        let action = e.reconcile().await.expect("waiting for a pull is no error");
        assert_eq!(
            action,
            kube::runtime::controller::Action::requeue(Duration::from_secs(2))
        );
        assert_eq!(
            e.condition("ContainerProvisioned"),
            ("False".into(), "PullingImage".into())
        );
    }
    let events = e.api.events();
    assert!(
        events.contains(&("Normal".into(), "PullingImage".into())),
        "{events:?}"
    );
    assert!(!events.iter().any(|(t, _)| t == "Warning"), "{events:?}");
    assert_eq!(e.count("create c-m"), 0, "no container before its image");
    gate.send(true).expect("let the pull finish");
    tokio::time::sleep(Duration::from_millis(50)).await;
    e.provisioned().await;
    assert_eq!(e.count("pull_image reg.example/node:v1"), 1);
    assert_eq!(e.count("create c-m"), 1);
}

#[tokio::test]
async fn a_node_image_no_registry_has_is_shown_as_not_found() {
    let e = env(true);
    let mut km = e.km().expect("KindMachine");
    km["spec"]["customImage"] = json!("reg.example/node:nope");
    e.api.put(km);
    e.reconcile().await.expect("the pull starts");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let error = e.reconcile().await.expect_err("the pull failed");
    assert_eq!(error.reason(), "ImageNotFound");
    assert_eq!(
        error.to_string(),
        "pulling image reg.example/node:nope failed (no such image in the registry): manifest unknown; \
         check the image's name and tag (spec.customImage, the Machine's version, the load balancer's \
         imageRepository and imageTag, preLoadImages)"
    );
    assert_eq!(
        e.condition("ContainerProvisioned"),
        ("False".into(), "ImageNotFound".into())
    );
    assert!(
        e.api
            .events()
            .contains(&("Warning".into(), "ImageNotFound".into()))
    );
    assert_eq!(e.count("create c-m"), 0);
}
