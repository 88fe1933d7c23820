//! Cluster API's Cluster and Machine as core writes them, in the shape of the version the test
//! API server serves (v1beta1 as CAPI v1.10, v1beta2 as CAPI v1.11+): the one place that knows
//! how the two versions spell references, owners and the status fields the provider reads.
//! The stand-ins of core (core.rs, fixtures.rs) write through these.

use capkind_api::capi::{Cluster, Machine, Version};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

/// The version the API server serves Cluster and Machine through, found as the manager finds
/// it; panics when Cluster API's CRDs are not installed.
pub async fn served(client: &Client) -> Version {
    capkind::manager::discovery::served_version(client)
        .await
        .unwrap_or_else(|e| panic!("which Cluster API version the test API server serves: {e}"))
}

/// The Clusters of `ns`, through `version`.
pub fn clusters(client: &Client, ns: &str, version: Version) -> Api<Cluster> {
    Api::namespaced_with(client.clone(), ns, &Cluster::api_resource(version))
}

/// The Machines of `ns`, through `version`.
pub fn machines(client: &Client, ns: &str, version: Version) -> Api<Machine> {
    Api::namespaced_with(client.clone(), ns, &Machine::api_resource(version))
}

/// The Clusters of `ns`, through the version served.
pub async fn served_clusters(client: &Client, ns: &str) -> Api<Cluster> {
    clusters(client, ns, served(client).await)
}

/// The Machines of `ns`, through the version served.
pub async fn served_machines(client: &Client, ns: &str) -> Api<Machine> {
    machines(client, ns, served(client).await)
}

/// A reference from a Cluster or Machine to the provider's `kind` named `name` in `ns`:
/// an ObjectReference in v1beta1, a ContractVersionedObjectReference (no version, no
/// namespace) in v1beta2.
pub fn reference(version: Version, kind: &str, name: &str, ns: &str) -> Value {
    match version {
        Version::V1Beta1 => json!({
            "apiVersion": format!("{}/v1beta2", capkind_api::GROUP), "kind": kind,
            "name": name, "namespace": ns}),
        Version::V1Beta2 => json!({"apiGroup": capkind_api::GROUP, "kind": kind, "name": name}),
    }
}

/// The owner reference core puts on the provider's objects: the Cluster or Machine (`kind`)
/// named `name` with `uid`, at the version core runs.
pub fn owner(version: Version, kind: &str, name: &str, uid: &str, controller: bool) -> Value {
    json!({"apiVersion": version.api_version(), "kind": kind, "name": name, "uid": uid,
           "controller": controller, "blockOwnerDeletion": true})
}

/// A Cluster named `name` in `ns` whose infrastructureRef is the KindCluster of the same name.
pub fn cluster(
    version: Version,
    ns: &str,
    name: &str,
    paused: bool,
    finalizers: &[&str],
) -> Cluster {
    serde_json::from_value(json!({
        "apiVersion": version.api_version(), "kind": "Cluster",
        "metadata": {"name": name, "namespace": ns, "finalizers": finalizers},
        "spec": {"paused": paused,
                 "infrastructureRef": reference(version, "KindCluster", name, ns)}
    }))
    .expect("Cluster")
}

/// A Machine `name` of `cluster` in `ns` with `labels`, its bootstrap data in the Secret
/// `data_secret` (when written), its infrastructureRef the KindMachine of the same name.
pub fn machine(
    version: Version,
    ns: &str,
    cluster: &str,
    name: &str,
    labels: &Value,
    data_secret: Option<&str>,
    finalizers: &[&str],
) -> Machine {
    serde_json::from_value(json!({
        "apiVersion": version.api_version(), "kind": "Machine",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "finalizers": finalizers},
        "spec": {"clusterName": cluster, "version": "v1.31.0",
                 "bootstrap": {"dataSecretName": data_secret},
                 "infrastructureRef": reference(version, "KindMachine", name, ns)}
    }))
    .expect("Machine")
}

/// The Cluster status core writes once the infrastructure is provisioned, and the control plane
/// initialized when asked: for a merge patch of `status`.
pub fn cluster_status(version: Version, control_plane_initialized: bool) -> Value {
    const WHEN: &str = "2026-11-23T10:00:00Z";
    match version {
        Version::V1Beta1 => {
            let conditions: Vec<Value> = control_plane_initialized
                .then(|| {
                    json!({"type": "ControlPlaneInitialized", "status": "True",
                           "lastTransitionTime": WHEN})
                })
                .into_iter()
                .collect();
            json!({"infrastructureReady": true, "conditions": conditions})
        }
        Version::V1Beta2 => {
            let (status, reason) = if control_plane_initialized {
                ("True", "Initialized")
            } else {
                ("False", "NotInitialized")
            };
            json!({
                "initialization": {"infrastructureProvisioned": true,
                                   "controlPlaneInitialized": control_plane_initialized.then_some(true)},
                "conditions": [
                    {"type": "InfrastructureReady", "status": "True", "reason": "Ready",
                     "message": "", "lastTransitionTime": WHEN},
                    {"type": "ControlPlaneInitialized", "status": status, "reason": reason,
                     "message": "", "lastTransitionTime": WHEN}
                ]
            })
        }
    }
}
