//! The KindMachinePool controller: a KindMachine per replica of a MachinePool. The instances
//! are ordinary KindMachines (labelled with the pool's name, owned by the pool); Cluster API
//! makes a Machine for each (MachinePool Machines), and the KindMachine controller gives each
//! its node container and bootstrap, with the MachinePool's bootstrap data, exactly as for any
//! other machine. This controller only decides how many there are and which go (plan.rs), and
//! reports them (status.rs).
//!
//! It reads the pool's instances and their Machines with a consistent LIST on every reconcile,
//! not from a watch cache: an instance created a moment ago is always seen, so a reconcile
//! right after a create (or after a restart) never creates it twice.

pub mod plan;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use capkind_api::capi::{
    CLUSTER_NAME_LABEL, Cluster, DELETE_MACHINE_ANNOTATION, MACHINE_POOL_NAME_LABEL, Machine,
    MachinePool,
};
use capkind_api::v1beta2::{KindMachine, KindMachinePool, KindMachinePoolInstance};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{Span, info, instrument};

use super::contract::Contract;
use super::{Context, Error, Scope, error_policy};
use plan::{Instance, Step};

/// The KindMachinePool finalizer.
pub const FINALIZER: &str = "kindmachinepool.infrastructure.cluster.x-k8s.io";
/// Annotation on an instance: the name of its MachinePool.
pub const POOL_ANNOTATION: &str = "capkind.x-k8s.io/machine-pool";
/// Annotation on an instance: the Kubernetes version it was made for.
pub const VERSION_ANNOTATION: &str = "capkind.x-k8s.io/kubernetes-version";
/// Annotation on an instance: the failure domain the pool placed it in.
pub const FAILURE_DOMAIN_ANNOTATION: &str = "capkind.x-k8s.io/failure-domain";

/// The controller's state.
pub struct Pools<D> {
    /// What every controller shares.
    pub ctx: Arc<Context<D>>,
    /// The MachinePools, from the watch that maps them to their pools.
    pub machine_pools: Store<MachinePool>,
    /// The Clusters, from the watch that maps them to their pools.
    pub clusters: Store<Cluster>,
}

/// The name a label carries for `value`, as Cluster API writes it (`format.MustFormatValue`):
/// the value itself when it fits in a label (63 characters), else `hash_<fnv32a>_z`.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        return value.to_string();
    }
    let hash = value.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.to_be_bytes());
    format!("hash_{encoded}_z")
}

/// The pool's identifier in `spec.providerID`.
pub fn pool_provider_id(cluster: &str, pool: &str) -> String {
    format!("kind://{cluster}/pool/{pool}")
}

/// Runs the controller until `shutdown` resolves.
pub async fn run<D: Send + Sync + 'static>(
    ctx: Arc<Context<D>>,
    scope: Scope,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    ctx.metrics.set_max_workers("kindmachinepool", concurrency);
    let (store, writer) = kube::runtime::reflector::store();
    let own = watcher(
        scope.api::<KindMachinePool>(client.clone()),
        scope.watcher(),
    )
    .modify(|p| p.managed_fields_mut().clear());
    let controller = Controller::for_stream(reflector(writer, own).applied_objects(), store);
    let pools = controller.store();
    super::mark_synced_when_ready(&ctx, pools.clone());

    let (mp, machine, cluster) = (
        MachinePool::api_resource(ctx.capi),
        Machine::api_resource(ctx.capi),
        Cluster::api_resource(ctx.capi),
    );
    let mp_writer = Writer::new(mp.clone());
    let cluster_writer = Writer::new(cluster.clone());
    let state = Arc::new(Pools {
        ctx: ctx.clone(),
        machine_pools: mp_writer.as_reader(),
        clusters: cluster_writer.as_reader(),
    });
    let machine_pools = state.machine_pools.clone();
    let instances = watcher(
        scope.api::<KindMachine>(client.clone()),
        scope.watcher().labels(MACHINE_POOL_NAME_LABEL),
    )
    .touched_objects();
    let pool_machines = watcher(
        scope.api_with::<Machine>(client.clone(), &machine),
        scope.watcher().labels(MACHINE_POOL_NAME_LABEL),
    )
    .touched_objects();
    controller
        .owns_stream(instances)
        .watches_stream_with(
            super::cached(mp_writer, scope.api_with(client.clone(), &mp), &scope),
            |p: MachinePool| pool_of(&p),
            mp,
        )
        .watches_stream_with(
            pool_machines,
            move |m: Machine| {
                let name = m.labels().get(MACHINE_POOL_NAME_LABEL)?;
                let ns = m.namespace();
                let state = machine_pools.state();
                let p = state
                    .iter()
                    .find(|p| p.namespace() == ns && label_value(&p.name_any()) == *name)?;
                pool_of(p)
            },
            machine,
        )
        .watches_stream_with(
            super::cached(cluster_writer, scope.api_with(client, &cluster), &scope),
            move |c: Cluster| {
                let (ns, name) = (c.namespace(), c.name_any());
                pools
                    .state()
                    .iter()
                    .filter(|p| {
                        p.namespace() == ns && p.labels().get(CLUSTER_NAME_LABEL) == Some(&name)
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
            cluster,
        )
        // Instances change in bursts while a pool scales (each instance's status a few times):
        // one reconcile, and one status write, for what changed within a quarter second.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(concurrency)
                .debounce(std::time::Duration::from_millis(250)),
        )
        .graceful_shutdown_on(shutdown)
        .run(
            |pool, p: Arc<Pools<D>>| {
                let metrics = p.ctx.metrics.clone();
                async move { super::counted("kindmachinepool", &metrics, pool, p, reconcile).await }
            },
            |pool, error, p| error_policy(pool.as_ref(), error, &p.ctx),
            state,
        )
        .for_each(|_| async {})
        .await;
}

/// The KindMachinePool a MachinePool's infrastructureRef names.
fn pool_of(p: &MachinePool) -> Option<ObjectRef<KindMachinePool>> {
    let r = &p.spec.template.spec.infrastructure_ref;
    if !r.is(&KindMachinePool::group(&()), &KindMachinePool::kind(&())) {
        return None;
    }
    Some(ObjectRef::new(r.name()?).within(&p.namespace().unwrap_or_default()))
}

/// Annotation on an instance: the bootstrap data Secret it was made with.
pub const BOOTSTRAP_SECRET_ANNOTATION: &str = "capkind.x-k8s.io/bootstrap-data-secret";

/// Reconciles one KindMachinePool.
#[instrument(skip_all, fields(controller = "kindmachinepool", controllerGroup = super::GROUP, controllerKind = "KindMachinePool", namespace = pool.namespace(), name = pool.name_any(), reconcileID = %super::reconcile_id(), cluster))]
pub async fn reconcile<D>(pool: Arc<KindMachinePool>, p: Arc<Pools<D>>) -> Result<Action, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<KindMachinePool> = Api::namespaced(p.ctx.client.clone(), &ns);
    let contract = Contract::new(&api, pool.as_ref(), FINALIZER);
    if contract.externally_managed() {
        return Ok(Action::await_change());
    }
    let Some(mp) = machine_pool(&p, &pool).await? else {
        return contract.without_owner("MachinePool").await;
    };
    let cluster_name = mp
        .labels()
        .get(CLUSTER_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| mp.spec.cluster_name.clone());
    Span::current().record("cluster", cluster_name.as_str());
    let key = ObjectRef::new_with(&cluster_name, Cluster::api_resource(p.ctx.capi)).within(&ns);
    let cluster = super::read(Some(&p.clusters), &p.ctx.clusters(&ns), &key).await?;
    let paused = cluster.as_ref().is_some_and(Cluster::is_paused);
    if let Some(message) = crate::capi::paused_message(paused, &pool.metadata, "KindMachinePool") {
        let st = status::paused(&pool, &message, &now());
        return contract.paused(pool.status.as_ref(), &st).await;
    }
    let target = Target {
        pool: &pool,
        mp: &mp,
        cluster: cluster.as_ref(),
        cluster_name: &cluster_name,
    };
    let result = steps(&p, &api, &contract, &target).await;
    contract
        .finish(&p.ctx, result, pool.status.as_ref(), |error| {
            failed(&pool, error)
        })
        .await
}

/// The pool, its MachinePool and its Cluster.
struct Target<'a> {
    pool: &'a KindMachinePool,
    mp: &'a MachinePool,
    cluster: Option<&'a Cluster>,
    cluster_name: &'a str,
}

/// The owner MachinePool (`None` until core sets it).
async fn machine_pool<D>(
    p: &Pools<D>,
    pool: &KindMachinePool,
) -> Result<Option<MachinePool>, Error> {
    let Some(owner) = crate::capi::owner(&pool.metadata, MachinePool::KIND) else {
        return Ok(None);
    };
    let ns = pool.namespace().unwrap_or_default();
    let resource = MachinePool::api_resource(p.ctx.capi);
    let key = ObjectRef::new_with(&owner.name, resource.clone()).within(&ns);
    let api = Api::namespaced_with(p.ctx.client.clone(), &ns, &resource);
    Ok(super::read(Some(&p.machine_pools), &api, &key).await?)
}

/// Deletion, or the plan's steps and the status.
async fn steps<D>(
    p: &Pools<D>,
    api: &Api<KindMachinePool>,
    contract: &Contract<'_, KindMachinePool>,
    t: &Target<'_>,
) -> Result<Action, Error> {
    let deleting = contract.delete_or_finalize().await?;
    let found = instances(p, t).await?;
    if deleting {
        return delete_all(p, api, t.pool, &found).await;
    }
    let wanted_data =
        t.mp.spec
            .template
            .spec
            .bootstrap
            .data_secret_name
            .as_deref();
    let version = t.mp.spec.template.spec.version.as_deref();
    let spec = t.pool.spec.template.machine_spec();
    let list: Vec<Instance> = found
        .iter()
        .map(|(km, m)| {
            let note = |key: &str| km.annotations().get(key).map(String::as_str);
            let mut made = km.spec.clone();
            made.provider_id.clear();
            Instance {
                name: km.name_any(),
                created: km
                    .creation_timestamp()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
                current: made == spec
                    && note(VERSION_ANNOTATION) == version
                    && note(BOOTSTRAP_SECRET_ANNOTATION) == wanted_data,
                ready: km.provisioned(),
                deleting: km.metadata.deletion_timestamp.is_some()
                    || m.as_ref()
                        .is_some_and(|m| m.metadata.deletion_timestamp.is_some()),
                delete_requested: m
                    .as_ref()
                    .is_some_and(|m| m.annotations().contains_key(DELETE_MACHINE_ANNOTATION)),
                has_machine: m.is_some(),
                failure_domain: note(FAILURE_DOMAIN_ANNOTATION).map(str::to_string),
            }
        })
        .collect();
    let wanted = usize::try_from(t.mp.replicas()).unwrap_or(0);
    let domains = failure_domains(p, t).await?;
    let mut planned = plan::plan(&list, wanted, &domains);
    if wanted_data.is_none() {
        planned.retain(|s| matches!(s, Step::Remove { .. }));
    }
    for step in &planned {
        act(p, t, step, &found).await?;
    }

    let live: Vec<&(KindMachine, Option<Machine>)> = found
        .iter()
        .zip(&list)
        .filter(|(_, i)| !i.deleting)
        .map(|(f, _)| f)
        .collect();
    let mut instances: Vec<KindMachinePoolInstance> = live
        .iter()
        .map(|(km, _)| KindMachinePoolInstance {
            instance_name: km.name_any(),
            provider_id: km.spec.provider_id.clone(),
            version: km.annotations().get(VERSION_ANNOTATION).cloned(),
            ready: km.provisioned(),
            addresses: km
                .status
                .as_ref()
                .map(|s| s.addresses.clone())
                .unwrap_or_default(),
        })
        .collect();
    instances.sort_by(|a, b| a.instance_name.cmp(&b.instance_name));
    let findings = status::Findings {
        wanted,
        outdated: list.iter().filter(|i| !i.deleting && !i.current).count(),
        instances,
        waiting_for_bootstrap_data: wanted_data.is_none() && wanted > 0,
    };
    let ids = status::provider_ids(&findings.instances);
    let provider_id = pool_provider_id(t.cluster_name, &t.pool.name_any());
    if t.pool.spec.provider_id_list != ids || t.pool.spec.provider_id != provider_id {
        let patch = serde_json::json!({"spec": {"providerID": provider_id, "providerIDList": ids}});
        api.patch(
            &t.pool.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    let st = status::status(t.pool, &findings, &now());
    super::apply_status(api, t.pool, t.pool.status.as_ref(), &st).await?;
    Ok(Action::requeue(p.ctx.sync_period))
}

/// The pool's instances (its KindMachines) with their Machines, read consistently.
async fn instances<D>(
    p: &Pools<D>,
    t: &Target<'_>,
) -> Result<Vec<(KindMachine, Option<Machine>)>, Error> {
    let ns = t.pool.namespace().unwrap_or_default();
    let selector = format!(
        "{MACHINE_POOL_NAME_LABEL}={},{CLUSTER_NAME_LABEL}={}",
        label_value(&t.mp.name_any()),
        t.cluster_name
    );
    let lp = ListParams::default().labels(&selector);
    let kms: Api<KindMachine> = Api::namespaced(p.ctx.client.clone(), &ns);
    let machines = p.ctx.machines(&ns);
    let (kms, machines) = futures::try_join!(kms.list(&lp), machines.list(&lp))?;
    let uid = t.pool.uid();
    let mut machines: BTreeMap<String, Machine> = machines
        .items
        .into_iter()
        .filter_map(|m| Some((m.spec.infrastructure_ref.name()?.to_string(), m)))
        .collect();
    Ok(kms
        .items
        .into_iter()
        .filter(|km| {
            km.owner_references()
                .iter()
                .any(|o| o.kind == KindMachinePool::kind(&()) && Some(&o.uid) == uid.as_ref())
        })
        .map(|km| {
            let machine = machines.remove(&km.name_any());
            (km, machine)
        })
        .collect())
}

/// The failure domains to spread over: the MachinePool's, else the KindCluster's.
async fn failure_domains<D>(p: &Pools<D>, t: &Target<'_>) -> Result<Vec<String>, Error> {
    if !t.mp.spec.failure_domains.is_empty() {
        return Ok(t.mp.spec.failure_domains.clone());
    }
    let ns = t.pool.namespace().unwrap_or_default();
    let name = super::kindmachine::plan::kind_cluster_name(t.cluster, t.cluster_name);
    let api: Api<capkind_api::v1beta2::KindCluster> = Api::namespaced(p.ctx.client.clone(), &ns);
    Ok(api
        .get_opt(&name)
        .await?
        .map(|kc| {
            kc.spec
                .failure_domains
                .into_iter()
                .map(|d| d.name)
                .collect()
        })
        .unwrap_or_default())
}

/// Carries out one step.
async fn act<D>(
    p: &Pools<D>,
    t: &Target<'_>,
    step: &Step,
    found: &[(KindMachine, Option<Machine>)],
) -> Result<(), Error> {
    let ns = t.pool.namespace().unwrap_or_default();
    match step {
        Step::Add { failure_domain } => {
            let km = new_instance(t, failure_domain.as_deref());
            let api: Api<KindMachine> = Api::namespaced(p.ctx.client.clone(), &ns);
            let made = api.create(&PostParams::default(), &km).await?;
            let where_ = failure_domain
                .as_deref()
                .map(|d| format!(" in failure domain {d}"))
                .unwrap_or_default();
            info!(instance = %made.name_any(), failure_domain, "instance added");
            p.ctx
                .event(
                    t.pool,
                    EventType::Normal,
                    "InstanceCreated",
                    format!("Created instance {}{where_}", made.name_any()),
                )
                .await;
        }
        Step::Remove { name, why } => {
            let Some(machine) = found
                .iter()
                .find(|(km, _)| km.name_any() == *name)
                .and_then(|(_, m)| m.as_ref())
            else {
                return Ok(());
            };
            // Through the Machine: core drains the node, then deletes the KindMachine.
            match p
                .ctx
                .machines(&ns)
                .delete(&machine.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            info!(instance = %name, why, "instance removed");
            p.ctx
                .event(
                    t.pool,
                    EventType::Normal,
                    "InstanceDeleted",
                    format!(
                        "Deleting Machine {} of instance {name}: {why}",
                        machine.name_any()
                    ),
                )
                .await;
        }
    }
    Ok(())
}

/// A new instance: a KindMachine from the pool's template, labelled as Cluster API's
/// MachinePool controller finds them, owned by the pool (not as its controller: core makes
/// the instance's Machine its controller).
fn new_instance(t: &Target<'_>, failure_domain: Option<&str>) -> KindMachine {
    let template = &t.mp.spec.template.spec;
    let mut annotations = BTreeMap::from([(POOL_ANNOTATION.to_string(), t.mp.name_any())]);
    for (key, value) in [
        (VERSION_ANNOTATION, template.version.as_deref()),
        (
            BOOTSTRAP_SECRET_ANNOTATION,
            template.bootstrap.data_secret_name.as_deref(),
        ),
        (FAILURE_DOMAIN_ANNOTATION, failure_domain),
    ] {
        if let Some(value) = value {
            annotations.insert(key.to_string(), value.to_string());
        }
    }
    let mut km = KindMachine::new("", t.pool.spec.template.machine_spec());
    km.metadata = ObjectMeta {
        generate_name: Some(format!("{}-", t.pool.name_any())),
        namespace: t.pool.namespace(),
        labels: Some(BTreeMap::from([
            (CLUSTER_NAME_LABEL.to_string(), t.cluster_name.to_string()),
            (
                MACHINE_POOL_NAME_LABEL.to_string(),
                label_value(&t.mp.name_any()),
            ),
        ])),
        annotations: Some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: KindMachinePool::api_version(&()).to_string(),
            kind: KindMachinePool::kind(&()).to_string(),
            name: t.pool.name_any(),
            uid: t.pool.uid().unwrap_or_default(),
            block_owner_deletion: Some(true),
            controller: None,
        }]),
        ..ObjectMeta::default()
    };
    km
}

/// Deletion: every instance goes (through its Machine when it has one), then the finalizer.
async fn delete_all<D>(
    p: &Pools<D>,
    api: &Api<KindMachinePool>,
    pool: &KindMachinePool,
    found: &[(KindMachine, Option<Machine>)],
) -> Result<Action, Error> {
    if found.is_empty() {
        super::remove_finalizer(api, pool, FINALIZER).await?;
        return Ok(Action::await_change());
    }
    let ns = pool.namespace().unwrap_or_default();
    let kms: Api<KindMachine> = Api::namespaced(p.ctx.client.clone(), &ns);
    for (km, machine) in found {
        let result = match machine {
            Some(m) if m.metadata.deletion_timestamp.is_none() => p
                .ctx
                .machines(&ns)
                .delete(&m.name_any(), &DeleteParams::default())
                .await
                .map(|_| ()),
            // Without a Machine (or with one core is deleting) the instance itself.
            _ if km.metadata.deletion_timestamp.is_none() => kms
                .delete(&km.name_any(), &DeleteParams::default())
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let st = status::showing(pool, status::deleting(found.len()), &now());
    super::apply_status(api, pool, pool.status.as_ref(), &st).await?;
    // The instances' deletions wake the pool; the requeue is a fallback.
    Ok(Action::requeue(std::time::Duration::from_secs(5)))
}

/// The status that shows `error`.
fn failed(pool: &KindMachinePool, error: &Error) -> capkind_api::v1beta2::KindMachinePoolStatus {
    let shown = crate::controllers::kindmachine::status::problem(
        status::REPLICAS_READY,
        error.reason(),
        error.to_string(),
    );
    status::showing(pool, shown, &now())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
