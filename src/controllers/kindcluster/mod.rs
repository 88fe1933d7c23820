//! The KindCluster controller: one haproxy load balancer per cluster and the control-plane
//! endpoint. Reconciles on changes to KindClusters, to their Clusters (pause, deletion), and to
//! their load-balancer containers in Docker (stopped or removed by hand), and every sync period.

mod reconcile;
pub mod status;

use std::sync::Arc;

use capkind_api::capi::Cluster;
use capkind_api::v1beta2::KindCluster;
use futures::StreamExt;
use kube::runtime::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

pub use reconcile::{FINALIZER, reconcile};

use super::{Context, Scope, error_policy};
use crate::docker::{ContainerRuntime, labels};

/// Runs the controller until `shutdown` resolves.
pub async fn run<D: ContainerRuntime + Clone>(
    ctx: Arc<Context<D>>,
    scope: Scope,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    ctx.metrics.set_max_workers("kindcluster", concurrency);
    let controller = Controller::new(scope.api::<KindCluster>(client.clone()), scope.watcher());
    super::mark_synced_when_ready(&ctx, controller.store());
    let clusters = Cluster::api_resource(ctx.capi);
    controller
        .watches_with(
            scope.api_with::<Cluster>(client, &clusters),
            clusters,
            scope.watcher(),
            cluster_to_kindcluster,
        )
        .reconcile_on(super::container_owner_events(
            ctx.docker.clone(),
            &[(labels::ROLE, labels::ROLE_LOAD_BALANCER)],
        ))
        .reconcile_all_on(super::docker_transitions(ctx.docker.clone()))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(
            |kc, ctx: Arc<Context<D>>| {
                let metrics = ctx.metrics.clone();
                async move { super::counted("kindcluster", &metrics, kc, ctx, reconcile).await }
            },
            |kc, error, ctx| error_policy(kc.as_ref(), error, &ctx),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// A Cluster maps to the KindCluster its infrastructureRef names (by group and kind: v1beta2
/// references carry no version).
fn cluster_to_kindcluster(cluster: Cluster) -> Option<ObjectRef<KindCluster>> {
    let r = cluster.spec.infrastructure_ref.as_ref()?;
    if !r.is(&KindCluster::group(&()), &KindCluster::kind(&())) {
        return None;
    }
    Some(ObjectRef::new(r.name()?).within(&cluster.namespace().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn clusters_of_either_version_map_to_their_kindcluster() {
        let infra = "infrastructure.cluster.x-k8s.io";
        let cases = [
            (
                "v1beta1",
                json!({"apiVersion": format!("{infra}/v1beta2"), "kind": "KindCluster",
                       "name": "kc", "namespace": "ns"}),
                Some("kc"),
            ),
            (
                "v1beta1, the KindCluster's old version",
                json!({"apiVersion": format!("{infra}/v1beta1"), "kind": "KindCluster", "name": "kc"}),
                Some("kc"),
            ),
            (
                "v1beta2",
                json!({"apiGroup": infra, "kind": "KindCluster", "name": "kc"}),
                Some("kc"),
            ),
            (
                "another provider's kind",
                json!({"apiGroup": infra, "kind": "DockerCluster", "name": "kc"}),
                None,
            ),
            (
                "another group",
                json!({"apiGroup": "example.com", "kind": "KindCluster", "name": "kc"}),
                None,
            ),
            (
                "no name",
                json!({"apiGroup": infra, "kind": "KindCluster"}),
                None,
            ),
        ];
        for (case, reference, expected) in cases {
            let cluster: Cluster = serde_json::from_value(json!({
                "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
                "metadata": {"name": "c", "namespace": "ns"},
                "spec": {"infrastructureRef": reference}
            }))
            .expect("Cluster");
            let got = cluster_to_kindcluster(cluster);
            assert_eq!(
                got,
                expected.map(|n| ObjectRef::new(n).within("ns")),
                "{case}"
            );
        }
        assert_eq!(
            cluster_to_kindcluster(Cluster::new("c", capkind_api::capi::Version::V1Beta1)),
            None
        );
    }
}
