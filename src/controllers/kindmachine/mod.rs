//! The KindMachine controller: a node container per Machine, its bootstrap, its place behind
//! the load balancer, and its provider ID. Reconciles on changes to KindMachines, to their
//! Machines, Clusters and KindClusters, to their containers in Docker, and when a bootstrap
//! running in a node ends (a task waits for that inside the node and wakes the machine up).
//!
//! One reconcile (reconcile.rs): the contract checks, then observe (observe.rs: everything
//! read once), plan (plan.rs: pure, the next steps and the machine's phase), act (act.rs: the
//! steps through Docker and the API), status (status.rs: pure, written once).

mod act;
pub mod bootstrap;
mod observe;
pub mod plan;
mod reconcile;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use capkind_api::capi::{self, CLUSTER_NAME_LABEL, Cluster, Machine};
use capkind_api::v1beta2::{KindCluster, KindMachine};
use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

pub use plan::provider_id;
pub use reconcile::{FINALIZER, reconcile};

use super::{Context, Scope, error_policy};
use crate::docker::{ContainerRuntime, labels};
use crate::node::Privileges;

/// The KindMachine controller's own state, next to the [`Context`] it shares with the
/// KindCluster controller; made by [`run`].
pub struct Machines<D> {
    /// What both controllers share.
    pub ctx: Arc<Context<D>>,
    /// How node containers get their rights.
    pub privileges: Privileges,
    /// The caches of the watches the controller keeps anyway, for reads without a request.
    pub cache: Cache,
    /// Nodes whose provider ID is known to be set in their workload cluster.
    pub nodes_done: Mutex<HashSet<String>>,
    /// The tasks that wait for bootstraps inside nodes.
    pub waiter: bootstrap::Waiter,
    /// Wakes a machine (namespace, name) up at once; the controller's `run` listens.
    pub wake: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// Turns to create or start a node container (`--node-start-concurrency`); `None`: as
    /// many at once as there are machines to make.
    pub starting: Option<tokio::sync::Semaphore>,
}

/// The objects a KindMachine reconcile reads, as the controller's watches see them.
#[derive(Clone)]
pub struct Cache {
    /// Machines.
    pub machines: Store<Machine>,
    /// Clusters.
    pub clusters: Store<Cluster>,
    /// KindClusters.
    pub kind_clusters: Store<KindCluster>,
}

/// What fills a [`Cache`].
struct Writers {
    machines: Writer<Machine>,
    clusters: Writer<Cluster>,
    kind_clusters: Writer<KindCluster>,
}

impl Cache {
    /// Empty caches, with Clusters and Machines read through `capi`, and what fills them.
    fn new(capi: capi::Version) -> (Self, Writers) {
        let writers = Writers {
            machines: Writer::new(Machine::api_resource(capi)),
            clusters: Writer::new(Cluster::api_resource(capi)),
            kind_clusters: Writer::default(),
        };
        let cache = Cache {
            machines: writers.machines.as_reader(),
            clusters: writers.clusters.as_reader(),
            kind_clusters: writers.kind_clusters.as_reader(),
        };
        (cache, writers)
    }

    /// Caches that stay empty (for tests: every read goes to the API).
    #[cfg(test)]
    pub fn empty(capi: capi::Version) -> Self {
        Self::new(capi).0
    }
}

/// Runs the controller until `shutdown` resolves, then stops its background tasks.
pub async fn run<D: ContainerRuntime + Clone>(
    ctx: Arc<Context<D>>,
    privileges: Privileges,
    scope: Scope,
    concurrency: u16,
    node_start_concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    ctx.metrics.set_max_workers("kindmachine", concurrency);
    // The controller's own store, as Controller::new makes it, without managed fields: nothing
    // here reads them, and at 100 machines they were the largest part of the cache.
    let (store, writer) = kube::runtime::reflector::store();
    let own = watcher(scope.api::<KindMachine>(client.clone()), scope.watcher())
        .modify(|km| km.managed_fields_mut().clear());
    let own = reflector(writer, own)
        .applied_objects()
        .predicate_filter(spec_and_metadata, Default::default());
    let controller = Controller::for_stream(own, store);
    let store = controller.store();
    super::mark_synced_when_ready(&ctx, store.clone());
    let (wake, wakeups) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let wakeups = futures::stream::unfold(wakeups, |mut rx| async move {
        let (namespace, name) = rx.recv().await?;
        Some((ObjectRef::new(&name).within(&namespace), rx))
    });
    let triggers = futures::stream::select(
        super::container_owner_events(ctx.docker.clone(), &[(labels::OWNER_KIND, "KindMachine")]),
        wakeups,
    );
    let (controller, cache) = with_related(controller, &scope, client, store, ctx.capi);
    let state = Arc::new(Machines {
        ctx: ctx.clone(),
        privileges,
        cache,
        nodes_done: Mutex::default(),
        waiter: bootstrap::Waiter::default(),
        wake,
        starting: (node_start_concurrency > 0)
            .then(|| tokio::sync::Semaphore::new(usize::from(node_start_concurrency))),
    });
    let waiter = state.waiter.clone();
    controller
        .reconcile_on(triggers)
        .reconcile_all_on(super::docker_transitions(ctx.docker.clone()))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(
            |km, m: Arc<Machines<D>>| {
                let metrics = m.ctx.metrics.clone();
                async move { super::counted("kindmachine", &metrics, km, m, reconcile).await }
            },
            |km, error, m| error_policy(km.as_ref(), error, &m.ctx),
            state,
        )
        .for_each(|_| async {})
        .await;
    waiter.shut_down().await;
}

/// What of a KindMachine its reconcile acts on: everything but its status (and what the API
/// server keeps for itself). A status-only update is this controller's own write, and a
/// reconcile on it only looked again at a node that nothing had changed: a third of the
/// reconciles at 100 machines. The cache still takes every update.
fn spec_and_metadata(km: &KindMachine) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = km.meta();
    let acted_on = (
        meta.generation,
        &meta.labels,
        &meta.annotations,
        &meta.finalizers,
        &meta.owner_references,
        &meta.deletion_timestamp,
    );
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&acted_on).ok()?.hash(&mut hasher);
    Some(hasher.finish())
}

/// The controller with the watches of the objects a KindMachine depends on (Machine, Cluster,
/// KindCluster; the first two through `capi`), which also fill the returned caches.
fn with_related(
    controller: Controller<KindMachine>,
    scope: &Scope,
    client: kube::Client,
    store: Store<KindMachine>,
    capi: capi::Version,
) -> (Controller<KindMachine>, Cache) {
    let (by_cluster, by_kindcluster) = (store.clone(), store);
    // The watches that trigger reconciles also fill caches, so reconciles read their Machine,
    // Cluster and KindCluster without a request (controller-runtime's cached client does the
    // same); 50 machines made ~20 GETs each before.
    let (cache, writers) = Cache::new(capi);
    let (machine, cluster) = (Machine::api_resource(capi), Cluster::api_resource(capi));
    let controller = controller
        .watches_stream_with(
            super::cached(
                writers.machines,
                scope.api_with(client.clone(), &machine),
                scope,
            ),
            machine_to_kindmachine,
            machine,
        )
        .watches_stream_with(
            super::cached(
                writers.clusters,
                scope.api_with(client.clone(), &cluster),
                scope,
            ),
            move |c: Cluster| {
                machines_of(
                    &by_cluster,
                    &c.namespace().unwrap_or_default(),
                    &c.name_any(),
                )
            },
            cluster,
        )
        .watches_stream(
            super::cached(
                writers.kind_clusters,
                scope.api::<KindCluster>(client),
                scope,
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
        );
    (controller, cache)
}

/// A Machine maps to the KindMachine its infrastructureRef names (by group and kind: v1beta2
/// references carry no version).
fn machine_to_kindmachine(m: Machine) -> Option<ObjectRef<KindMachine>> {
    let r = &m.spec.infrastructure_ref;
    if !r.is(&KindMachine::group(&()), &KindMachine::kind(&())) {
        return None;
    }
    Some(ObjectRef::new(r.name()?).within(&m.namespace().unwrap_or_default()))
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

#[cfg(test)]
mod trigger_tests {
    use super::*;

    #[test]
    fn only_status_updates_are_not_acted_on() {
        let km: KindMachine = serde_json::from_value(serde_json::json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "KindMachine",
            "metadata": {"name": "m", "namespace": "ns", "generation": 1},
            "spec": {}
        }))
        .expect("KindMachine");
        let base = spec_and_metadata(&km);
        assert!(base.is_some());
        let mut status = km.clone();
        status.status = Some(Default::default());
        status.metadata.resource_version = Some("2".into());
        assert_eq!(spec_and_metadata(&status), base, "a status-only update");
        let changes: [fn(&mut KindMachine); 6] = [
            |k| k.metadata.generation = Some(2),
            |k| {
                k.labels_mut().insert("a".into(), "b".into());
            },
            |k| {
                k.annotations_mut()
                    .insert("cluster.x-k8s.io/paused".into(), String::new());
            },
            |k| k.finalizers_mut().push(FINALIZER.into()),
            |k| {
                k.owner_references_mut().push(Default::default());
            },
            |k| {
                k.metadata.deletion_timestamp = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
                )
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut k = km.clone();
            change(&mut k);
            assert_ne!(spec_and_metadata(&k), base, "change {i} is acted on");
        }
    }
}
