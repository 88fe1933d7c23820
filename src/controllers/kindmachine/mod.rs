//! The KindMachine controller: a node container per Machine, its bootstrap, its place behind
//! the load balancer, and its provider ID. Reconciles on changes to KindMachines, to their
//! Machines, Clusters and KindClusters, to their containers in Docker, and when a bootstrap
//! running in a node ends (a task waits for that inside the node and wakes the machine up).

pub mod bootstrap;
mod reconcile;
pub mod status;

use std::sync::Arc;

use capkind_api::capi::{CLUSTER_NAME_LABEL, Cluster, Machine};
use capkind_api::v1beta1::{KindCluster, KindMachine};
use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

pub use reconcile::{FINALIZER, provider_id, reconcile};

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
    ctx.metrics.set_max_workers("kindmachine", concurrency);
    let controller = Controller::new(scope.api::<KindMachine>(client.clone()), scope.watcher());
    let store = controller.store();
    super::mark_synced_when_ready(&ctx, store.clone());
    let triggers = futures::stream::select(
        super::container_owner_events(ctx.docker.clone(), &[(labels::OWNER_KIND, "KindMachine")]),
        ctx.wakeups(),
    );
    let (by_cluster, by_kindcluster) = (store.clone(), store);
    // The watches that trigger reconciles also fill caches, so reconciles read their Machine,
    // Cluster and KindCluster without a request (controller-runtime's cached client does the
    // same); 50 machines made ~20 GETs each before.
    let (machines, machines_writer) = reflector::store();
    let (clusters, clusters_writer) = reflector::store();
    let (kind_clusters, kind_clusters_writer) = reflector::store();
    let _ = ctx.cache.set(super::Cache {
        machines,
        clusters,
        kind_clusters,
    });
    controller
        .watches_stream(
            cached(
                machines_writer,
                scope.api::<Machine>(client.clone()),
                &scope,
            ),
            machine_to_kindmachine,
        )
        .watches_stream(
            cached(
                clusters_writer,
                scope.api::<Cluster>(client.clone()),
                &scope,
            ),
            move |c: Cluster| {
                machines_of(
                    &by_cluster,
                    &c.namespace().unwrap_or_default(),
                    &c.name_any(),
                )
            },
        )
        .watches_stream(
            cached(
                kind_clusters_writer,
                scope.api::<KindCluster>(client),
                &scope,
            ),
            move |kc: KindCluster| {
                let cluster = kc
                    .labels()
                    .get(CLUSTER_NAME_LABEL)
                    .cloned()
                    .unwrap_or_else(|| kc.name_any());
                machines_of(
                    &by_kindcluster,
                    &kc.namespace().unwrap_or_default(),
                    &cluster,
                )
            },
        )
        .reconcile_on(triggers)
        .reconcile_all_on(super::docker_transitions(ctx.docker.clone()))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(
            |km, ctx| super::counted("kindmachine", km, ctx, reconcile),
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// The watch of `api` within `scope`, filling `writer`'s cache on the way.
fn cached<K>(
    writer: reflector::store::Writer<K>,
    api: kube::Api<K>,
    scope: &Scope,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    reflector(writer, watcher(api, scope.watcher())).touched_objects()
}

/// A Machine maps to the KindMachine its infrastructureRef names.
fn machine_to_kindmachine(m: Machine) -> Option<ObjectRef<KindMachine>> {
    let r = &m.spec.infrastructure_ref;
    let group = r.api_version.as_deref()?.split('/').next()?;
    if r.kind.as_deref() != Some("KindMachine") || group != KindMachine::group(&()) {
        return None;
    }
    Some(ObjectRef::new(r.name.as_deref()?).within(&m.namespace().unwrap_or_default()))
}

/// The KindMachines of a cluster, from the controller's own cache (no API calls in a mapper).
fn machines_of(
    store: &Store<KindMachine>,
    namespace: &str,
    cluster: &str,
) -> Vec<ObjectRef<KindMachine>> {
    store
        .state()
        .iter()
        .filter(|km| {
            km.namespace().as_deref() == Some(namespace)
                && km.labels().get(CLUSTER_NAME_LABEL).map(String::as_str) == Some(cluster)
        })
        .map(|km| ObjectRef::from_obj(km.as_ref()))
        .collect()
}
