//! Everything one KindMachine reconcile looks up, read once: the Machine, Cluster and
//! KindCluster (from the watch caches), the node container, its last output when it died, the
//! bootstrap's progress inside the node, and the bootstrap Secret when it is about to be used.

use capkind_api::capi::{CLUSTER_NAME_LABEL, Cluster, Machine};
use capkind_api::v1beta2::{KindCluster, KindMachine};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::Machines;
use super::bootstrap::{self, Report, Seen};
use super::plan::{self, BootstrapData, Observed, Progress};
use super::status::{BOOTSTRAP_EXEC_SUCCEEDED, reason};
use crate::controllers::{self, Error};
use crate::docker::{Container, ContainerRuntime};
use crate::node;

/// The owner Machine, its cluster's name and the Cluster: what the contract checks need.
pub struct Owners {
    /// The Machine.
    pub machine: Machine,
    /// The cluster's name (label, else spec).
    pub cluster_name: String,
    /// The Cluster, when it exists.
    pub cluster: Option<Cluster>,
}

/// The owner Machine (`None` until Cluster API sets it) and its Cluster.
pub async fn owners<D>(m: &Machines<D>, km: &KindMachine) -> Result<Option<Owners>, Error> {
    let ns = km.namespace().unwrap_or_default();
    let ctx = &m.ctx;
    let machine = match crate::capi::owner(&km.metadata, Machine::KIND) {
        Some(owner) => {
            let key = ObjectRef::new_with(&owner.name, Machine::api_resource(ctx.capi));
            let key = key.within(&ns);
            controllers::read(Some(&m.cache.machines), &ctx.machines(&ns), &key).await?
        }
        None => None,
    };
    let Some(mut machine) = machine else {
        return Ok(None);
    };
    pool_instance(km, &mut machine);
    let cluster_name = machine
        .labels()
        .get(CLUSTER_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| machine.spec.cluster_name.clone());
    let key = ObjectRef::new_with(&cluster_name, Cluster::api_resource(ctx.capi)).within(&ns);
    let cluster = controllers::read(Some(&m.cache.clusters), &ctx.clusters(&ns), &key).await?;
    Ok(Some(Owners {
        machine,
        cluster_name,
        cluster,
    }))
}

/// A MachinePool's instance: its Machine (made by core's MachinePool controller) carries no
/// bootstrap data, version or failure domain; the pool wrote on the instance what it was made
/// with, and the rest of the reconcile reads them from the Machine as for any machine.
fn pool_instance(km: &KindMachine, machine: &mut Machine) {
    use crate::controllers::kindmachinepool::{
        BOOTSTRAP_SECRET_ANNOTATION, FAILURE_DOMAIN_ANNOTATION, VERSION_ANNOTATION,
    };
    if !km
        .labels()
        .contains_key(capkind_api::capi::MACHINE_POOL_NAME_LABEL)
    {
        return;
    }
    let note = |key: &str| km.annotations().get(key).filter(|v| !v.is_empty()).cloned();
    let spec = &mut machine.spec;
    spec.bootstrap.data_secret_name = spec
        .bootstrap
        .data_secret_name
        .take()
        .or_else(|| note(BOOTSTRAP_SECRET_ANNOTATION));
    spec.version = note(VERSION_ANNOTATION).or_else(|| spec.version.take());
    spec.failure_domain = spec
        .failure_domain
        .take()
        .or_else(|| note(FAILURE_DOMAIN_ANNOTATION));
}

/// The rest of what the plan needs.
pub async fn observe<D: ContainerRuntime>(
    m: &Machines<D>,
    km: &KindMachine,
    owners: Owners,
) -> Result<Observed, Error> {
    let container_name = node::container_name(&owners.cluster_name, &owners.machine.name_any());
    let container = m.ctx.docker.inspect(&container_name).await?;
    let mut o = Observed {
        kind_cluster: kind_cluster(m, km, &owners).await?,
        machine: owners.machine,
        cluster_name: owners.cluster_name,
        cluster: owners.cluster,
        node_done: m
            .nodes_done
            .lock()
            .is_ok_and(|done| done.contains(&container_name)),
        container_name,
        container,
        console: String::new(),
        progress: Progress::NotLooked,
        bootstrap_data: None,
        now: chrono::Utc::now(),
    };
    let ours = o
        .container
        .as_ref()
        .is_some_and(|c| plan::owner_of(km).owns(&c.labels));
    if km.metadata.deletion_timestamp.is_some() || (!ours && o.container.is_some()) {
        return Ok(o);
    }
    if let Some(c) = &o.container
        && node::exited_by_itself(c)
    {
        o.console = console(m, c).await;
    }
    o.progress = progress(m, km, &o).await?;
    let starts = match (&o.container, &o.progress) {
        (None, _) => plan::wait_reason(&o).is_none(),
        (Some(_), Progress::Reported(Report::NotStarted)) => true,
        _ => false,
    };
    if starts {
        o.bootstrap_data = Some(bootstrap_data(m, km, &o.machine).await?);
    }
    Ok(o)
}

async fn kind_cluster<D>(
    m: &Machines<D>,
    km: &KindMachine,
    owners: &Owners,
) -> Result<Option<KindCluster>, Error> {
    let ns = km.namespace().unwrap_or_default();
    let name = plan::kind_cluster_name(owners.cluster.as_ref(), &owners.cluster_name);
    let api = Api::namespaced(m.ctx.client.clone(), &ns);
    let key = ObjectRef::new(&name).within(&ns);
    Ok(controllers::read(Some(&m.cache.kind_clusters), &api, &key).await?)
}

/// The last lines of a container's output; empty when Docker cannot tell.
async fn console<D: ContainerRuntime>(m: &Machines<D>, c: &Container) -> String {
    // More lines than a report keeps: blank ones at the end are dropped first.
    match m
        .ctx
        .docker
        .logs_tail(&c.name, 4 * node::EXIT_LOG_LINES)
        .await
    {
        Ok(console) => console,
        Err(e) => {
            tracing::debug!(container = %c.name, error = %e, "no output of the exited container");
            String::new()
        }
    }
}

/// Where the bootstrap stands, looked at only when that can matter: the container runs, has
/// been up long enough, and the status does not say the bootstrap is done. What a waiting task
/// saw is used instead of a look; while it waits, the node is not looked at at all.
async fn progress<D: ContainerRuntime>(
    m: &Machines<D>,
    km: &KindMachine,
    o: &Observed,
) -> Result<Progress, Error> {
    let Some(c) = o.container.as_ref().filter(|c| c.running) else {
        return Ok(Progress::NotLooked);
    };
    let done = plan::prior(km, BOOTSTRAP_EXEC_SUCCEEDED)
        .is_some_and(|c| c.reason == reason::BOOTSTRAP_SUCCEEDED);
    if (done && !km.spec.provider_id.is_empty()) || node::boot_grace_left(c, o.now).is_some() {
        return Ok(Progress::NotLooked);
    }
    Ok(match m.waiter.take(&c.name) {
        Seen::Waiting => Progress::Waiting,
        Seen::Returned(report) => Progress::Reported(report),
        Seen::Nothing => {
            Progress::Reported(bootstrap::Node::new(&m.ctx.docker, &c.name).probe().await?)
        }
    })
}

/// The bootstrap Secret's format and value.
async fn bootstrap_data<D>(
    m: &Machines<D>,
    km: &KindMachine,
    machine: &Machine,
) -> Result<BootstrapData, Error> {
    let name = machine
        .spec
        .bootstrap
        .data_secret_name
        .clone()
        .unwrap_or_default();
    let secret =
        Api::<Secret>::namespaced(m.ctx.client.clone(), &km.namespace().unwrap_or_default())
            .get_opt(&name)
            .await?;
    let mut data = secret.and_then(|s| s.data).unwrap_or_default();
    Ok(match data.remove("value") {
        Some(value) => BootstrapData::Found {
            format: data
                .get("format")
                .map(|f| String::from_utf8_lossy(&f.0).into_owned()),
            value: value.0,
        },
        None => BootstrapData::Missing(name),
    })
}
