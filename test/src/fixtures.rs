//! Objects as Cluster API core would create them.

use capkind_api::capi::Cluster;
use capkind_api::v1beta1::KindCluster;
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
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), ns);
    let cluster: Cluster = serde_json::from_value(json!({
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "paused": paused,
            "infrastructureRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "KindCluster",
                                  "name": name, "namespace": ns}
        }
    }))
    .expect("cluster");
    let cluster = clusters
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
        vec![json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "name": c.name_any(),
                    "uid": c.uid().expect("uid")})]
    });
    let kc: KindCluster = serde_json::from_value(json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "KindCluster",
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
