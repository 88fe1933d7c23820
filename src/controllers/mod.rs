//! The reconcilers and what they share: the [`Context`], the [`Error`] with its short reason,
//! the contract checks ([`contract`]), per-object backoff, finalizers and status writes.

pub mod backends;
pub mod contract;
pub mod images;
pub mod kindcluster;
pub mod kindmachine;
pub mod kindmachinepool;
pub mod kindmachinetemplate;
#[cfg(test)]
pub mod testing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capkind_api::capi::{self, Cluster, Machine};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::docker;
use crate::loadbalancer;
use crate::metrics::Metrics;

/// The field manager of every write the provider makes.
pub const FIELD_MANAGER: &str = "capkind";

/// The API group of the objects the controllers reconcile, as their log lines name it.
pub use capkind_api::GROUP;

/// A fresh ID for one reconcile, in the UUID shape controller-runtime's `reconcileID` has, so
/// a reconcile's log lines can be picked out of interleaved ones.
pub fn reconcile_id() -> String {
    const VERSION: u128 = 0xf << 76;
    const VARIANT: u128 = 0x3 << 62;
    // Version 4 (random), RFC 4122 variant.
    let n = (fastrand::u128(..) & !VERSION & !VARIANT) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What both reconcilers need, shared by all their workers (the KindMachine controller's own
/// state is `kindmachine::Machines`).
pub struct Context<D> {
    /// The management cluster.
    pub client: Client,
    /// The container engine.
    pub docker: D,
    /// Publishes Kubernetes Events (one recorder, so repeats are folded).
    pub recorder: Recorder,
    /// How often a healthy object is looked at again without any change.
    pub sync_period: Duration,
    /// Metrics of reconciles, Docker calls, bootstraps and machines.
    pub metrics: Arc<Metrics>,
    /// The Docker network of KindClusters that name none.
    pub default_network: String,
    /// Set once the controller's cache holds its first full list.
    pub cache_synced: Arc<std::sync::atomic::AtomicBool>,
    /// The version Cluster API's Cluster and Machine are read through: the newest the API
    /// server serves, found at start-up (v1beta1, which every release up to v1.15 serves,
    /// until then).
    pub capi: capi::Version,
    /// Images pulled when missing, once each, shared by both controllers.
    pub images: Arc<images::Pulls>,
    failures: Mutex<HashMap<String, u32>>,
}

/// Whether a watch cache holds its first full list (without waiting: the readiness signal
/// wakes only one waiter).
pub fn is_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
}

/// Reads the object `key` names from `cache` once it holds its first full list, else (and when
/// the cache does not have it, as with an object created a moment ago) through `api`, which
/// must be of the key's namespace. An object from the cache may be a moment old; its watch then
/// triggers another reconcile.
pub async fn read<K>(
    cache: Option<&Store<K>>,
    api: &Api<K>,
    key: &ObjectRef<K>,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    if let Some(store) = cache
        && is_ready(store)
        && let Some(found) = store.get(key)
    {
        return Ok(Some(found.as_ref().clone()));
    }
    api.get_opt(&key.name).await
}

impl<D> Context<D> {
    /// A context for the controller named `controller` (also the events' reporter).
    pub fn new(client: Client, docker: D, controller: &str, sync_period: Duration) -> Self {
        let reporter = Reporter {
            controller: format!("capkind-{controller}"),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            docker,
            sync_period,
            cache_synced: Arc::default(),
            capi: capi::Version::default(),
            metrics: Arc::default(),
            default_network: capkind_api::v1beta2::DEFAULT_NETWORK.to_string(),
            images: Arc::default(),
            failures: Mutex::default(),
        }
    }

    /// Records into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Pulls missing images through `pulls` (shared with the other controller, so that an
    /// image is pulled once).
    pub fn with_images(mut self, pulls: Arc<images::Pulls>) -> Self {
        self.images = pulls;
        self
    }

    /// Reads Cluster API's Cluster and Machine through `version`.
    pub fn with_capi(mut self, version: capi::Version) -> Self {
        self.capi = version;
        self
    }

    /// The Clusters of `namespace`, read through the version chosen.
    pub fn clusters(&self, namespace: &str) -> Api<Cluster> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &Cluster::api_resource(self.capi),
        )
    }

    /// The Machines of `namespace`, read through the version chosen.
    pub fn machines(&self, namespace: &str) -> Api<Machine> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &Machine::api_resource(self.capi),
        )
    }

    /// Uses `network` for KindClusters that name none.
    pub fn with_default_network(mut self, network: impl Into<String>) -> Self {
        self.default_network = network.into();
        self
    }

    /// The Docker network of a KindCluster.
    pub fn network(&self, kc: &capkind_api::v1beta2::KindCluster) -> String {
        kc.spec
            .network
            .clone()
            .unwrap_or_else(|| self.default_network.clone())
    }

    /// Forgets the failures of an object that reconciled successfully.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }

    /// The next retry delay for an object that failed: 1 s doubling up to 2 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(8);
        Duration::from_secs(1u64 << (*n - 1)).min(Duration::from_secs(120))
    }

    /// Publishes an event about `obj`, its note cut at line boundaries to what the API server
    /// accepts; a failure to publish never fails a reconcile, and is logged and counted.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(crate::report::fit(&note, crate::report::EVENT_NOTE_LIMIT)),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            self.metrics.event_refused(reason);
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or did not answer.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The Docker engine refused or did not answer.
    #[error(transparent)]
    Docker(#[from] docker::Error),
    /// The load balancer's configuration could not be put in place.
    #[error(transparent)]
    LoadBalancerConfig(#[from] loadbalancer::Error),
    /// The haproxy template does not render.
    #[error(transparent)]
    Template(#[from] loadbalancer::config::Error),
    /// The ConfigMap with the custom haproxy template is missing or has no `value`.
    #[error("ConfigMap {name} with the custom haproxy template is missing or has no key \"value\"")]
    TemplateNotFound { name: String },
    /// A container with the name the provider needs belongs to someone else.
    #[error(
        "container {name} already exists and does not belong to this object; remove or rename it (docker rm -f {name})"
    )]
    NameConflict { name: String },
    /// The container name the provider needs is another object's container.
    #[error(
        "container {name} belongs to {holder}: Docker container names are one set for the whole host, so clusters in different namespaces need different names; rename this Cluster"
    )]
    NameTaken { name: String, holder: String },
    /// The container name cannot be a hostname.
    #[error(
        "the container name {name} has {len} characters, but a hostname (which the node's is) has at most {max}; shorten the Cluster or Machine name (the node is named <cluster>-<machine>, or <machine> when it starts with the cluster's name)",
        len = name.len(), max = crate::node::MAX_HOSTNAME
    )]
    NameTooLong { name: String },
    /// The image went from the Docker engine between its pull and its use.
    #[error(
        "image {image} is no longer in the Docker engine (removed after it was pulled?); it is pulled again"
    )]
    ImageMissing { image: String },
    /// The image is missing and being pulled (`preload`: one of `preLoadImages`).
    #[error("pulling image {image}, which the Docker engine does not have yet")]
    ImagePulling { image: String, preload: bool },
    /// The image is missing and could not be pulled.
    #[error("{}", pull_failure(image, error))]
    ImagePull {
        image: String,
        preload: bool,
        error: Arc<images::PullError>,
    },
    /// No image can be chosen for the node.
    #[error(transparent)]
    NoImage(#[from] crate::node::NoImage),
    /// The bootstrap data is unusable.
    #[error(transparent)]
    BootstrapData(#[from] crate::bootstrap::Error),
    /// The bootstrap Secret is missing or has no `value`.
    #[error("bootstrap Secret {name} is missing or has no key \"value\"")]
    BootstrapSecretMissing { name: String },
    /// The KindMachine's bootstrapTimeout does not parse.
    #[error(transparent)]
    BadTimeout(#[from] capkind_api::duration::ParseDurationError),
    /// An image could not be loaded into a node.
    #[error("loading image {image} into the node failed: {message}")]
    PreloadFailed { image: String, message: String },
    /// The Cluster's KindCluster does not exist.
    #[error("KindCluster {name} of the Cluster does not exist")]
    KindClusterNotFound { name: String },
    /// A container has no address on its network.
    #[error("container {container} has no address on network {network}")]
    NoAddress { container: String, network: String },
}

impl Error {
    /// The API server refused a write because the object changed since it was read: the
    /// next reconcile sees the new object, so this is retried at once, not reported.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(e)) if e.code == 409)
    }

    /// Not a failure: something is under way (an image being pulled). Shown in the status
    /// with a Normal event, and looked at again soon without backoff.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Error::ImagePulling { .. })
    }

    /// The same error about one of `preLoadImages` (shown in the bootstrap's condition).
    pub fn preloading(self) -> Self {
        match self {
            Error::ImagePulling { image, .. } => Error::ImagePulling {
                image,
                preload: true,
            },
            Error::ImagePull { image, error, .. } => Error::ImagePull {
                image,
                preload: true,
                error,
            },
            other => other,
        }
    }

    /// Nothing changes by trying again: the user must change an object (a name). Such errors
    /// wait for a change instead of a retry.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Error::NameTooLong { .. } | Error::NameTaken { .. })
    }

    /// The conflict for container `name`, found with `labels`: who holds it, when it is
    /// another object of this provider's.
    pub fn name_conflict(name: &str, labels: &std::collections::BTreeMap<String, String>) -> Self {
        match docker::labels::Owner::from_labels(labels) {
            Some(o) => Error::NameTaken {
                name: name.to_string(),
                holder: format!("{} {}/{}", o.kind, o.namespace, o.name),
            },
            None => Error::NameConflict {
                name: name.to_string(),
            },
        }
    }

    /// A short PascalCase reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Docker(docker::Error::Unavailable { .. }) => "DockerUnavailable",
            Error::Docker(_) => "DockerError",
            Error::LoadBalancerConfig(loadbalancer::Error::Invalid(_)) => "HAProxyConfigInvalid",
            Error::LoadBalancerConfig(loadbalancer::Error::Docker(
                docker::Error::Unavailable { .. },
            )) => "DockerUnavailable",
            Error::LoadBalancerConfig(_) => "LoadBalancerConfigFailed",
            Error::Template(_) => "HAProxyTemplateInvalid",
            Error::TemplateNotFound { .. } => "HAProxyTemplateNotFound",
            Error::NameConflict { .. } | Error::NameTaken { .. } => "ContainerNameConflict",
            Error::NameTooLong { .. } => "ContainerNameTooLong",
            Error::ImageMissing { .. } => "ImageNotFound",
            Error::ImagePulling { .. } => "PullingImage",
            Error::ImagePull { error, .. } => match error.as_ref() {
                images::PullError::Credentials(_) => "DockerConfigInvalid",
                images::PullError::Docker(docker::Error::Pull { failure, .. }) => match failure {
                    docker::PullFailure::NotFound => "ImageNotFound",
                    docker::PullFailure::Unauthorized => "ImagePullUnauthorized",
                    docker::PullFailure::Unreachable => "ImageRegistryUnreachable",
                    docker::PullFailure::Other => "ImagePullFailed",
                },
                images::PullError::Docker(docker::Error::Unavailable { .. }) => "DockerUnavailable",
                images::PullError::Docker(_) => "ImagePullFailed",
            },
            Error::NoAddress { .. } => "ContainerAddressMissing",
            Error::KindClusterNotFound { .. } => "KindClusterNotFound",
            Error::NoImage(_) => "NodeImageUnknown",
            Error::PreloadFailed { .. } => "PreLoadImageFailed",
            Error::BootstrapData(_) => "BootstrapDataInvalid",
            Error::BootstrapSecretMissing { .. } => "BootstrapSecretNotFound",
            Error::BadTimeout(_) => "BootstrapTimeoutInvalid",
        }
    }
}

/// What a user is told of a failed pull: the engine's or registry's answer, and what to do.
fn pull_failure(image: &str, error: &images::PullError) -> String {
    let hint = match error {
        images::PullError::Docker(docker::Error::Pull { failure, .. }) => match failure {
            docker::PullFailure::NotFound => {
                "; check the image's name and tag (spec.customImage, the Machine's version, the load balancer's imageRepository and imageTag, preLoadImages)".to_string()
            }
            docker::PullFailure::Unauthorized => format!(
                "; give the manager credentials for {} in the Docker configuration it reads (--docker-config)",
                docker::credentials::registry_of(image)
            ),
            docker::PullFailure::Unreachable => {
                "; the Docker engine must reach the registry (is it running? a proxy?)".to_string()
            }
            docker::PullFailure::Other => String::new(),
        },
        images::PullError::Docker(_) => String::new(),
        images::PullError::Credentials(_) => "; fix or remove the file".to_string(),
    };
    match error {
        images::PullError::Credentials(e) => format!("cannot pull image {image}: {e}{hint}"),
        images::PullError::Docker(e @ docker::Error::Pull { .. }) => format!("{e}{hint}"),
        images::PullError::Docker(e) => format!("cannot pull image {image}: {e}"),
    }
}

/// Objects of kind `K` whose containers (those carrying `labels`) changed state in Docker, found
/// through the containers' owner labels. Reconnects, a second apart, when the engine goes away.
pub fn container_owner_events<K, D>(
    docker: D,
    labels: &'static [(&'static str, &'static str)],
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + 'static,
    D: docker::ContainerRuntime + Clone,
{
    use futures::StreamExt;
    futures::stream::unfold(true, move |first| {
        let docker = docker.clone();
        async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some((docker.container_events(labels), false))
        }
    })
    .flatten()
    .filter_map(|event| async move {
        let owner = docker::labels::Owner::from_labels(&event.ok()?.labels)?;
        (owner.kind == K::kind(&())).then(|| ObjectRef::new(&owner.name).within(&owner.namespace))
    })
}

/// One item each time the Docker engine goes away or comes back, for `reconcile_all_on`: every
/// object then shows the outage (DockerUnavailable) and recovers from it without waiting for
/// its backoff or a change. It holds an event subscription that matches no container, so a
/// steady state costs no Docker request; only while the engine is away does it try again,
/// once a second.
pub fn docker_transitions<D>(docker: D) -> impl futures::Stream<Item = ()> + Send + 'static
where
    D: docker::ContainerRuntime + Clone,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        const NOTHING: &[(&str, &str)] = &[("capkind.x-k8s.io/availability-probe", "none")];
        let mut up = true;
        loop {
            let mut events = docker.container_events(NOTHING);
            // An engine that is away refuses at once; one that answers keeps the stream open.
            let connected = !matches!(
                tokio::time::timeout(Duration::from_secs(1), events.next()).await,
                Ok(Some(Err(_)) | None)
            );
            if connected != up {
                up = connected;
                if up {
                    tracing::info!("the Docker engine answers again");
                } else {
                    tracing::warn!("the Docker engine does not answer");
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
            // Ends with the controller: its end drops the receiver.
            if connected {
                loop {
                    tokio::select! {
                        item = events.next() => if !matches!(item, Some(Ok(_))) { break },
                        () = tx.closed() => return,
                    }
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = tx.closed() => return,
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// Runs `reconcile` and counts it in `metrics` under `controller`.
pub async fn counted<K, C, F, Fut>(
    controller: &'static str,
    metrics: &Metrics,
    obj: Arc<K>,
    ctx: Arc<C>,
    reconcile: F,
) -> Result<Action, Error>
where
    F: FnOnce(Arc<K>, Arc<C>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let timer = metrics.reconcile(controller);
    let result = match reconcile(obj, ctx).await {
        Err(e) if e.is_conflict() => {
            tracing::debug!(error = %e, "object changed while reconciling; again with the new one");
            Ok(Action::requeue(Duration::from_millis(100)))
        }
        other => other,
    };
    timer.done(result.as_ref().map(|_| ()).map_err(Error::reason));
    result
}

/// Sets `ctx.cache_synced` once `store` has its first full list.
pub fn mark_synced_when_ready<K, D>(ctx: &Context<D>, store: kube::runtime::reflector::Store<K>)
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync + Default,
{
    let synced = ctx.cache_synced.clone();
    tokio::spawn(async move {
        // The readiness signal wakes only the last task that waited on it, and the controller
        // itself waits on it too, so poll it again now and then instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    tracing::debug!(kind = %K::kind(&Default::default()), "cache synced");
                    synced.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cache never synced");
                    return;
                }
                Err(_) => {}
            }
        }
    });
}

/// Which objects a controller watches: one namespace or all, and the watch-filter label.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this namespace, when set.
    pub namespace: Option<String>,
    /// Only objects whose `cluster.x-k8s.io/watch-filter` label has this value, when set.
    pub watch_filter: Option<String>,
}

impl Scope {
    /// The API of kind `K` within the scope.
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }

    /// The API of kind `K`, whose version is known at run time as `dyntype`, within the scope.
    pub fn api_with<K>(&self, client: Client, dyntype: &K::DynamicType) -> Api<K>
    where
        K: Resource<Scope = kube::core::DynamicResourceScope>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client, ns, dyntype),
            None => Api::all_with(client, dyntype),
        }
    }

    /// The watcher configuration within the scope.
    pub fn watcher(&self) -> kube::runtime::watcher::Config {
        let config = kube::runtime::watcher::Config::default();
        match &self.watch_filter {
            Some(value) => config.labels(&format!("{}={value}", capi::WATCH_FILTER_LABEL)),
            None => config,
        }
    }
}

/// The watch of `api` within `scope`, filling `writer`'s cache on the way (without managed
/// fields, which nothing reads and which take most of the room).
pub fn cached<K>(
    writer: kube::runtime::reflector::store::Writer<K>,
    api: kube::Api<K>,
    scope: &Scope,
) -> impl futures::Stream<Item = Result<K, kube::runtime::watcher::Error>> + Send + 'static
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    use kube::runtime::WatchStreamExt;
    let objects =
        kube::runtime::watcher(api, scope.watcher()).modify(|o| o.managed_fields_mut().clear());
    kube::runtime::reflector(writer, objects).touched_objects()
}

/// The key of an object in the backoff table.
pub fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Retries a failed object with per-object exponential backoff.
pub fn error_policy<K: Resource, D>(obj: &K, error: &Error, ctx: &Context<D>) -> Action {
    if error.is_terminal() {
        tracing::warn!(object = %key(obj), reason = error.reason(), error = %error, "reconcile failed; waiting for a change");
        return Action::await_change();
    }
    let delay = ctx.backoff(&key(obj));
    tracing::warn!(object = %key(obj), reason = error.reason(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Adds `finalizer` unless present (optimistic concurrency through the resourceVersion).
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if obj.finalizers().iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(finalizer.to_string());
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

/// Removes `finalizer` if present. A JSON patch that tests the entry it removes, instead of a
/// resourceVersion: the deletion path writes the object's status just before, and that write
/// must not turn this one into a conflict.
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(at) = obj.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(remove_finalizer_patch(at, finalizer))
        .map_err(kube::Error::SerdeError)?;
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        // The list moved since `obj` was read (the test failed): the next reconcile retries.
        Err(kube::Error::Api(mut e)) if e.code == 422 => {
            e.code = 409;
            Err(kube::Error::Api(e))
        }
        Err(e) => Err(e),
    }
}

/// The JSON patch that removes `finalizer`, found at index `at`, only if it is still there.
fn remove_finalizer_patch(at: usize, finalizer: &str) -> serde_json::Value {
    let path = format!("/metadata/finalizers/{at}");
    serde_json::json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ])
}

/// Writes `status` with server-side apply when it differs from `current`; a steady object
/// causes no write at all.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    use super::*;

    #[test]
    fn reconcile_ids_are_version_4_uuids_and_differ() {
        let (a, b) = (reconcile_id(), reconcile_id());
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{a}");
        assert_eq!(&a[14..15], "4", "{a}");
        assert!("89ab".contains(&a[19..20]), "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{a}");
    }

    fn machine(name: &str) -> Machine {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"clusterName": "c", "bootstrap": {}, "infrastructureRef": {}}
        }))
        .expect("Machine")
    }

    /// A client whose API server answers every request with `from-api` and counts them.
    fn client(requests: Arc<AtomicUsize>) -> Client {
        let service = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            requests.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::to_vec(&machine("from-api")).expect("json");
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body))
                        .expect("response"),
                )
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn reads_come_from_a_synced_cache_and_fall_back_to_the_api() {
        let requests = Arc::new(AtomicUsize::new(0));
        let client = client(requests.clone());
        let ar = Machine::api_resource(capi::Version::V1Beta2);
        let mut writer: Writer<Machine> = Writer::new(ar.clone());
        let store = writer.as_reader();
        let read = |name: &'static str| {
            let (store, ar) = (store.clone(), ar.clone());
            let api = Api::<Machine>::namespaced_with(client.clone(), "ns", &ar);
            async move {
                read(
                    Some(&store),
                    &api,
                    &ObjectRef::new_with(name, ar).within("ns"),
                )
                .await
                .expect("read")
                .map(|m| m.name_any())
            }
        };

        // Before the first full list the cache is not trusted.
        assert_eq!(read("a").await.as_deref(), Some("from-api"));
        assert_eq!(requests.load(Ordering::SeqCst), 1);

        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(machine("a")));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert!(is_ready(&store));
        assert_eq!(read("a").await.as_deref(), Some("a"));
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "a cached read asked the API"
        );

        // An object the cache has not seen yet is asked for.
        assert_eq!(read("b").await.as_deref(), Some("from-api"));
        assert_eq!(requests.load(Ordering::SeqCst), 2);
    }
}
