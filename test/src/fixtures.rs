//! Objects as Cluster API core would create them, Cluster API's own in the newest version the
//! API server serves.

use capkind_api::capi::{Cluster, Machine, Version};
use capkind_api::v1beta2::KindCluster;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// A Cluster named `name` whose infrastructureRef is the KindCluster of the same name, and that
/// KindCluster owned by it (the owner reference core sets). `kind_spec` is the KindCluster spec.
pub async fn cluster_with_kindcluster(
    client: &Client,
    ns: &str,
    name: &str,
    paused: bool,
    kind_spec: serde_json::Value,
) -> (Cluster, KindCluster) {
    let version = crate::capi::served(client).await;
    let cluster = crate::capi::cluster(version, ns, name, paused, &[]);
    let cluster = crate::capi::clusters(client, ns, version)
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create Cluster");
    let kindcluster = kindcluster_owned_by(client, ns, name, Some(&cluster), kind_spec).await;
    (cluster, kindcluster)
}

/// A KindCluster, owned by `owner` when given.
pub async fn kindcluster_owned_by(
    client: &Client,
    ns: &str,
    name: &str,
    owner: Option<&Cluster>,
    spec: serde_json::Value,
) -> KindCluster {
    let owners = owner.map(|c| {
        vec![
            json!({"apiVersion": c.api_version, "kind": "Cluster", "name": c.name_any(),
                    "uid": c.uid().expect("uid")}),
        ]
    });
    let kc: KindCluster = serde_json::from_value(json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindCluster",
        "metadata": {"name": name, "namespace": ns, "labels": {"cluster.x-k8s.io/cluster-name": name},
                     "ownerReferences": owners.unwrap_or_default()},
        "spec": spec
    }))
    .expect("kindcluster");
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &kc)
        .await
        .expect("create KindCluster")
}

/// The KindCluster spec that uses the local haproxy image and a network of the test's own.
pub fn kind_spec(network: &str) -> serde_json::Value {
    let (repository, tag) = crate::docker::images().haproxy_repository_and_tag();
    json!({"network": network, "loadBalancer": {"imageRepository": repository, "imageTag": tag}})
}

/// Marks the Cluster's infrastructure ready (and the control plane initialized, when asked) in
/// its status, as Cluster API core does, in the version served.
pub async fn mark_cluster(client: &Client, ns: &str, name: &str, control_plane_initialized: bool) {
    let version = crate::capi::served(client).await;
    mark_cluster_at(client, ns, name, version, control_plane_initialized).await;
}

/// [`mark_cluster`] in `version`'s shape.
pub async fn mark_cluster_at(
    client: &Client,
    ns: &str,
    name: &str,
    version: Version,
    control_plane_initialized: bool,
) {
    let status = json!({"status": crate::capi::cluster_status(version, control_plane_initialized)});
    crate::capi::clusters(client, ns, version)
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("patch Cluster status");
}

/// A bootstrap Secret as CABPK writes it: keys `value` and `format`.
pub async fn bootstrap_secret(
    client: &Client,
    ns: &str,
    name: &str,
    cluster: &str,
    format: &str,
    value: &str,
) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"cluster.x-k8s.io/cluster-name": cluster}},
        "type": "cluster.x-k8s.io/secret",
        "stringData": {"value": value, "format": format}
    }))
    .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

/// A Machine (control plane or worker) and its KindMachine, linked as core links them: the
/// Machine's infrastructureRef names the KindMachine, which the Machine owns.
pub async fn machine_with_kindmachine(
    client: &Client,
    ns: &str,
    cluster: &str,
    name: &str,
    control_plane: bool,
    data_secret: Option<&str>,
    kind_spec: serde_json::Value,
) -> capkind_api::v1beta2::KindMachine {
    let mut labels = json!({"cluster.x-k8s.io/cluster-name": cluster});
    if control_plane {
        labels["cluster.x-k8s.io/control-plane"] = json!("");
    }
    let version = crate::capi::served(client).await;
    let machine = crate::capi::machine(version, ns, cluster, name, &labels, data_secret, &[]);
    let machine = crate::capi::machines(client, ns, version)
        .create(&PostParams::default(), &machine)
        .await
        .expect("create Machine");
    let km: capkind_api::v1beta2::KindMachine = serde_json::from_value(json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachine",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "ownerReferences": [{"apiVersion": machine.api_version, "kind": Machine::KIND,
                                          "name": name, "uid": machine.uid().expect("uid")}]},
        "spec": kind_spec
    }))
    .expect("kindmachine");
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &km)
        .await
        .expect("create KindMachine")
}

/// The KindMachine spec that runs the local node image.
pub fn machine_spec() -> serde_json::Value {
    json!({"customImage": crate::docker::images().node})
}

/// A Cluster and its KindCluster (unique names, a network of their own) in `ns`, tracked by
/// `janitor`; returns the KindCluster once it is ready: `status.ready` and the Ready condition.
pub async fn ready_cluster(
    client: &Client,
    ns: &str,
    janitor: &mut crate::docker::Janitor,
) -> KindCluster {
    let name = crate::names::unique("c");
    janitor.track(format!("{name}-lb"));
    cluster_with_kindcluster(
        client,
        ns,
        &name,
        false,
        kind_spec(&crate::names::unique("net")),
    )
    .await;
    let api: Api<KindCluster> = Api::namespaced(client.clone(), ns);
    crate::wait::until(
        "KindCluster ready",
        std::time::Duration::from_secs(60),
        || async {
            let kc = api.get(&name).await.map_err(|e| e.to_string())?;
            if kindcluster_is_ready(&kc) {
                Ok(kc)
            } else {
                Err(format!("{:?}", kc.status))
            }
        },
    )
    .await
}

/// Waits until the KindMachine `name` satisfies `check`; panics after `timeout` with its
/// conditions.
pub async fn kindmachine_until(
    api: &Api<capkind_api::v1beta2::KindMachine>,
    name: &str,
    what: &str,
    timeout: std::time::Duration,
    check: impl Fn(&capkind_api::v1beta2::KindMachine) -> bool,
) -> capkind_api::v1beta2::KindMachine {
    crate::wait::until(what, timeout, || async {
        let km = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&km) {
            Ok(km)
        } else {
            Err(format!("{:?}", km.status.as_ref().map(|s| &s.conditions)))
        }
    })
    .await
}

/// Whether a KindMachine is ready as core sees it: `status.ready` and a provider ID.
pub fn is_ready(km: &capkind_api::v1beta2::KindMachine) -> bool {
    km.provisioned() && !km.spec.provider_id.is_empty()
}

/// Waits until the workload cluster's Node `name` carries `provider_id`.
pub async fn node_has_provider_id(
    nodes: &Api<k8s_openapi::api::core::v1::Node>,
    name: &str,
    provider_id: &str,
    timeout: std::time::Duration,
) {
    crate::wait::until(
        &format!("Node {name} has its provider ID"),
        timeout,
        || async {
            let n = nodes.get(name).await.map_err(|e| e.to_string())?;
            let got = n.spec.and_then(|s| s.provider_id);
            if got.as_deref() == Some(provider_id) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await
}

/// A KindMachine's v1beta2 condition of `type_`.
pub fn kindmachine_condition(
    km: &capkind_api::v1beta2::KindMachine,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let conditions = &km.status.as_ref()?.conditions;
    conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// A KindCluster's v1beta2 condition of `type_`.
pub fn kindcluster_condition(
    kc: &KindCluster,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let conditions = &kc.status.as_ref()?.conditions;
    conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Whether a KindCluster is ready: `status.ready` and its Ready condition True.
pub fn kindcluster_is_ready(kc: &KindCluster) -> bool {
    kc.provisioned() && kindcluster_condition(kc, "Ready").is_some_and(|c| c.status == "True")
}
