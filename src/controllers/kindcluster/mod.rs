//! The KindCluster controller: one haproxy load balancer per cluster and the control-plane
//! endpoint. Reconciles on changes to KindClusters, to their Clusters (pause, deletion), and to
//! their load-balancer containers in Docker (stopped or removed by hand), and every sync period.

mod reconcile;
pub mod status;

use std::sync::Arc;

use capkind_api::capi::Cluster;
use capkind_api::v1beta1::KindCluster;
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
    controller
        .watches(
            scope.api::<Cluster>(client),
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
            |kc, ctx| super::counted("kindcluster", kc, ctx, reconcile),
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// A Cluster maps to the KindCluster its infrastructureRef names.
fn cluster_to_kindcluster(cluster: Cluster) -> Option<ObjectRef<KindCluster>> {
    let r = cluster.spec.infrastructure_ref.as_ref()?;
    let group = r.api_version.as_deref()?.split('/').next()?;
    if r.kind.as_deref() != Some("KindCluster") || group != KindCluster::group(&()) {
        return None;
    }
    Some(ObjectRef::new(r.name.as_deref()?).within(&cluster.namespace().unwrap_or_default()))
}
