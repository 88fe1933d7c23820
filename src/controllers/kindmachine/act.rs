//! The steps of a KindMachine plan, carried out in order through the Docker trait and the API.
//! Each step is idempotent; a reconcile cut short anywhere is finished by the next one.

use capkind_api::capi::Cluster;
use capkind_api::v1beta2::{KindMachine, MachineAddress, MachineAddressType};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use tracing::info;

use super::Machines;
use super::bootstrap;
use super::plan::{Next, Observed, Plan, SOON, Step, owner_of};
use crate::controllers::{self, Error};
use crate::docker::{Container, ContainerRuntime, ContainerSpec};
use crate::node;

/// What the steps left behind.
pub enum Outcome {
    /// All steps ran; the container as it is now (created or started by a step, or observed).
    Done(Option<Box<Container>>),
    /// Cut short by a race (a name taken or freed meanwhile, a container that died at once):
    /// the status stays, and the machine is looked at again after this.
    Again(Next),
}

/// The events a reconcile announces. Kept back (`deferred`) they are published after the
/// status write, so that an API round trip per event does not sit between a container's start
/// and its bootstrap upload, or between the bootstrap's launch and the status that says so;
/// otherwise (a deletion: the object may be gone after the last step) at once.
pub struct News {
    deferred: bool,
    kept: Vec<(EventType, &'static str, String)>,
}

impl News {
    /// Events kept until [`News::publish`] when `deferred`.
    pub fn new(deferred: bool) -> Self {
        Self {
            deferred,
            kept: Vec::new(),
        }
    }

    async fn tell<D>(
        &mut self,
        m: &Machines<D>,
        km: &KindMachine,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
        if self.deferred {
            self.kept.push((type_, reason, note));
        } else {
            event(m, km, type_, reason, note).await;
        }
    }

    /// Publishes what was kept back, in order.
    pub async fn publish<D>(self, m: &Machines<D>, km: &KindMachine) {
        for (type_, reason, note) in self.kept {
            event(m, km, type_, reason, note).await;
        }
    }
}

/// Runs `plan`'s steps for `km`, announcing through `news`.
pub async fn act<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    api: &Api<KindMachine>,
    o: &Observed,
    plan: &Plan,
    news: &mut News,
) -> Result<Outcome, Error> {
    let mut container = o.container.clone().map(Box::new);
    // A container just created and started is looked at beside the bootstrap's upload when
    // that comes next (a round trip less between its start and its bootstrap), else at once.
    let mut look = false;
    for step in &plan.steps {
        if look && !matches!(step, Step::StartBootstrap(_)) {
            look = false;
            match running(m, &o.container_name).await? {
                Some(c) => container = Some(c),
                None => return Ok(Outcome::Again(Next::Requeue(SOON))),
            }
        }
        match step {
            Step::Create if create(m, km, o, news).await? => look = true,
            Step::Create => return Ok(Outcome::Again(Next::Requeue(SOON))),
            Step::Start => match start(m, &o.container_name).await? {
                Some(c) => container = Some(Box::new(c)),
                None => return Ok(Outcome::Again(Next::Requeue(SOON))),
            },
            Step::StartBootstrap(data) if look => {
                look = false;
                let node = bootstrap::Node::new(&m.ctx.docker, &o.container_name);
                let (c, uploaded) = tokio::join!(running(m, &o.container_name), node.upload(data));
                match c? {
                    Some(c) => container = Some(c),
                    None => return Ok(Outcome::Again(Next::Requeue(SOON))),
                }
                uploaded?;
                launch(m, km, &o.container_name, data, news).await?;
            }
            other => run(m, km, api, o, other, news).await?,
        }
    }
    if look {
        match running(m, &o.container_name).await? {
            Some(c) => container = Some(c),
            None => return Ok(Outcome::Again(Next::Requeue(SOON))),
        }
    }
    Ok(Outcome::Done(container))
}

/// The container just started, as it is now; `None` when it is gone or died at once (the
/// next look finds out which, and why).
async fn running<D: ContainerRuntime>(
    m: &Machines<D>,
    name: &str,
) -> Result<Option<Box<Container>>, Error> {
    Ok(m.ctx
        .docker
        .inspect(name)
        .await?
        .filter(|c| !node::exited_by_itself(c))
        .map(Box::new))
}

/// Starts the uploaded bootstrap: the waiter's exec starts the script; only where none can
/// be started (one waits already, or the manager stops) does an exec of its own.
async fn launch<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    name: &str,
    data: &crate::bootstrap::Plan,
    news: &mut News,
) -> Result<(), Error> {
    if !watch(m, km, name, 0, 0, true)? {
        bootstrap::Node::new(&m.ctx.docker, name).start().await?;
    }
    info!(container = %name, steps = data.len(), ignored = ?data.ignored, "bootstrap started");
    let note = format!("Bootstrap of {name} started ({} steps)", data.len());
    news.tell(m, km, EventType::Normal, "BootstrapStarted", note)
        .await;
    Ok(())
}

/// One step that does not change which container there is.
async fn run<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    api: &Api<KindMachine>,
    o: &Observed,
    step: &Step,
    news: &mut News,
) -> Result<(), Error> {
    let name = &o.container_name;
    let node = bootstrap::Node::new(&m.ctx.docker, name);
    match step {
        Step::Create | Step::Start => {}
        Step::ReconfigureLoadBalancer => reconfigure(m, o).await?,
        Step::PreloadImages => preload_images(m, km, name).await?,
        Step::StartBootstrap(data) => {
            node.upload(data).await?;
            launch(m, km, name, data, news).await?;
        }
        Step::StopBootstrap => node.stop().await?,
        Step::Watch { step, elapsed } => {
            watch(m, km, name, *step, *elapsed, false)?;
        }
        Step::RecordBootstrapTime { elapsed } => m.ctx.metrics.bootstrap_succeeded(*elapsed),
        Step::SetProviderId(id) => {
            let patch = serde_json::json!({"spec": {"providerID": id}});
            let params = PatchParams::default();
            api.patch(&km.name_any(), &params, &Patch::Merge(&patch))
                .await?;
            info!(provider_id = %id, "node provisioned");
        }
        Step::Event {
            type_,
            reason,
            note,
        } => news.tell(m, km, *type_, reason, note.clone()).await,
        Step::Remove => {
            m.ctx.docker.remove(name).await?;
            m.waiter.forget(name);
            info!(container = %name, "node container removed");
            let note = format!("Removed container {name}");
            news.tell(m, km, EventType::Normal, "ContainerDeleted", note)
                .await;
        }
        Step::RemoveFinalizer => {
            if let Ok(mut done) = m.nodes_done.lock() {
                done.remove(name);
            }
            controllers::remove_finalizer(api, km, super::FINALIZER).await?;
            m.ctx.metrics.machine_phase(&controllers::key(km), None);
        }
    }
    Ok(())
}

/// Publishes an event; a Warning is logged too, its note on one line.
async fn event<D>(m: &Machines<D>, km: &KindMachine, type_: EventType, reason: &str, note: String) {
    if type_ == EventType::Warning {
        let what = match reason {
            super::status::reason::BOOTSTRAP_FAILED => "bootstrap failed",
            super::status::reason::BOOTSTRAP_TIMED_OUT => "bootstrap timed out",
            super::status::reason::BOOTSTRAP_INTERRUPTED => {
                "bootstrap interrupted by a node restart"
            }
            super::status::reason::CONTAINER_EXITED => "node container exited during boot",
            _ => "machine problem",
        };
        tracing::warn!(reason, note = ?note, "{what}");
    }
    m.ctx.event(km, type_, reason, note).await;
}

/// The load balancer with the cluster's running control planes.
async fn reconfigure<D: ContainerRuntime>(m: &Machines<D>, o: &Observed) -> Result<(), Error> {
    let Some(kc) = &o.kind_cluster else {
        return Ok(());
    };
    let ipv6 = o.cluster.as_ref().is_some_and(Cluster::is_ipv6);
    controllers::backends::reconfigure(&m.ctx, Some(&m.cache.machines), kc, &o.cluster_name, ipv6)
        .await
}

/// A task that waits inside the node for the bootstrap to move past `step` (with `launch`,
/// after starting it), then wakes the machine up; it gives up at the timeout, or after two
/// minutes (then the next look starts another). `false` when none was started.
fn watch<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    name: &str,
    step: usize,
    elapsed: u64,
    launch: bool,
) -> Result<bool, Error> {
    let timeout = km.spec.bootstrap_timeout()?.as_secs();
    let limit = timeout.saturating_sub(elapsed).min(120) + 1;
    let (wake, key) = (
        m.wake.clone(),
        (km.namespace().unwrap_or_default(), km.name_any()),
    );
    Ok(m.waiter
        .watch(&m.ctx.docker, name, step, limit, launch, move || {
            let _ = wake.send(key);
        }))
}

/// A turn to create or start a node container, where `--node-start-concurrency` limits them.
/// Waiting for one is safe to interrupt (nothing is held but the place in the queue). The
/// semaphore is never closed; were it, there would be no limit.
async fn turn<D>(m: &Machines<D>) -> Option<tokio::sync::SemaphorePermit<'_>> {
    m.starting.as_ref()?.acquire().await.ok()
}

/// Starts the stopped container; `None` when it was removed meanwhile (a deletion under way:
/// its events bring the next look).
async fn start<D: ContainerRuntime>(
    m: &Machines<D>,
    name: &str,
) -> Result<Option<Container>, Error> {
    let started = {
        let _turn = turn(m).await;
        m.ctx.docker.start(name).await
    };
    match started {
        Ok(()) => Ok(m.ctx.docker.inspect(name).await?),
        Err(e) if e.is_not_found() => {
            tracing::debug!(container = %name, "container gone while starting it");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates and starts the node container; whether it was started (it is not looked at yet).
/// `false` when the name turned out to be taken by a container that appeared or went
/// meanwhile (another manager's, or one being removed), or when the engine could not run it
/// (kept, so that its state says why): the next reconcile looks at it afresh, ownership
/// included.
async fn create<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    o: &Observed,
    news: &mut News,
) -> Result<bool, Error> {
    let docker = &m.ctx.docker;
    // The turn first: the address picked for the node is held for a minute only, however
    // long the wait for a turn.
    let _turn = turn(m).await;
    let (spec, image) = node_spec(m, km, o).await?;
    let name = &o.container_name;
    match docker.create(&spec).await {
        Ok(_) => {}
        Err(crate::docker::Error::Conflict { .. }) => {
            tracing::debug!(container = %name, "the name is taken meanwhile; looking again");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = docker.start(name).await {
        if e.is_not_found() {
            return Ok(false);
        }
        // The engine could not run it (an entry point missing, a bad image): kept, so that
        // its state says why (ContainerExited). Anything else (an address or port taken
        // meanwhile) removes it, and the next attempt chooses again.
        if let Ok(Some(c)) = docker.inspect(name).await
            && node::exited_by_itself(&c)
            && !c.error.contains("in use")
        {
            info!(container = %name, error = %e, "node container could not start");
            return Ok(false);
        }
        let _ = docker.remove(name).await;
        return Err(e.into());
    }
    info!(container = %name, %image, "node container created");
    let note = format!("Created container {name} from {image}");
    news.tell(m, km, EventType::Normal, "ContainerCreated", note)
        .await;
    Ok(true)
}

/// The node container to create, on a fixed address of the cluster's network, and its image.
async fn node_spec<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    o: &Observed,
) -> Result<(ContainerSpec, String), Error> {
    let docker = &m.ctx.docker;
    let kc = o
        .kind_cluster
        .as_ref()
        .ok_or_else(|| super::plan::kind_cluster_missing(o))?;
    let node::NodeImage {
        reference: image,
        mode,
    } = node::image(
        km.spec.custom_image.as_deref(),
        o.machine.spec.version.as_deref(),
    )?;
    let network = m.ctx.network(kc);
    // Independent lookups, side by side: each is a round trip to a busy engine. The address
    // is picked while the network is made sure of; a pick that found no network (it was
    // missing, or there were two of that name) is made again once there is one.
    let address = async {
        let (ensured, picked) = tokio::join!(
            docker.ensure_network(&network),
            docker.free_address(&network)
        );
        ensured?;
        match picked {
            Ok(address) => Ok(address),
            Err(_) => docker.free_address(&network).await,
        }
    };
    let (image_command, address) = tokio::try_join!(docker.image_command(&image), address)?;
    let image_command = match image_command {
        Some(command) => command,
        // Missing: pulled (PullingImage until it is there), then looked at again.
        None => {
            m.ctx.images.ensure(docker, &image).await?;
            docker
                .image_command(&image)
                .await?
                .ok_or_else(|| Error::ImageMissing {
                    image: image.clone(),
                })?
        }
    };
    let proxy = node::proxy_env_from_process();
    let mut spec = node::container_spec(&node::Params {
        cluster: &o.cluster_name,
        name: &o.container_name,
        image: &image,
        network: &network,
        control_plane: o.machine.is_control_plane(),
        failure_domain: o.machine.spec.failure_domain.as_deref(),
        extra_mounts: &km.spec.extra_mounts,
        owner: &owner_of(km),
        privileges: m.privileges,
        proxy_env: &proxy,
        image_command: &image_command,
        mode,
    });
    // A fixed address: the node comes back on it after a restart, whatever the order.
    spec.ipv4_address = address;
    Ok((spec, image))
}

/// The node's addresses as Cluster API lists them: hostname, internal and external IP.
pub fn addresses(c: &Container, network: &str) -> Result<Vec<MachineAddress>, Error> {
    let ip = c
        .networks
        .get(network)
        .and_then(|n| n.ipv4.clone().or_else(|| n.ipv6.clone()));
    let ip = ip.ok_or_else(|| Error::NoAddress {
        container: c.name.clone(),
        network: network.to_string(),
    })?;
    let address = |type_, address: &str| MachineAddress {
        type_,
        address: address.to_string(),
    };
    Ok(vec![
        address(MachineAddressType::Hostname, &c.name),
        address(MachineAddressType::InternalIP, &ip),
        address(MachineAddressType::ExternalIP, &ip),
    ])
}

/// Copies `preLoadImages` from the host's Docker into the node's containerd, as `kind load`
/// does, before the bootstrap (kubeadm must find them).
async fn preload_images<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    container: &str,
) -> Result<(), Error> {
    let docker = &m.ctx.docker;
    for image in &km.spec.pre_load_images {
        m.ctx
            .images
            .ensure(docker, image)
            .await
            .map_err(Error::preloading)?;
        let cmd = [
            "ctr",
            "--namespace=k8s.io",
            "images",
            "import",
            "--all-platforms",
            "-",
        ];
        let out = docker.pipe_image(image, container, &cmd).await?;
        if out.exit_code != 0 {
            return Err(Error::PreloadFailed {
                image: image.clone(),
                message: crate::report::redact(String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        info!(container, image, "image loaded into the node");
    }
    Ok(())
}

/// Sets the provider ID on the workload cluster's Node; true once it is there. Failures are
/// logged and retried: the machine itself is provisioned either way.
pub async fn node_provider_id<D>(
    m: &Machines<D>,
    km: &KindMachine,
    o: &Observed,
    addresses: &[MachineAddress],
) -> bool {
    let name = &o.container_name;
    let id = super::provider_id(&o.cluster_name, name);
    let ns = km.namespace().unwrap_or_default();
    // In the kubelet's order: the address first, then the hostname.
    let of_type = |t: MachineAddressType, label: &'static str| {
        addresses
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| (label, a.address.as_str()))
    };
    let addresses: Vec<(&str, &str)> = [
        of_type(MachineAddressType::InternalIP, "InternalIP"),
        of_type(MachineAddressType::Hostname, "Hostname"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let outcome = match crate::workload::client(&m.ctx.client, &ns, &o.cluster_name).await {
        Ok(Some(workload)) => {
            crate::workload::set_provider_id(&workload, name, &id, &addresses).await
        }
        Ok(None) => Ok(crate::workload::ProviderId::NoKubeconfig),
        Err(e) => Err(e),
    };
    let done = match outcome {
        Ok(crate::workload::ProviderId::Set) => {
            info!(node = %name, provider_id = %id, "workload Node has its provider ID");
            true
        }
        Ok(crate::workload::ProviderId::Conflict(existing)) => {
            let note = format!("Node {name} already has provider ID {existing}, not {id}");
            event(m, km, EventType::Warning, "NodeProviderIDConflict", note).await;
            true
        }
        Ok(pending) => {
            tracing::debug!(node = %name, ?pending, "workload Node not ready for its provider ID yet");
            false
        }
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "workload cluster not reachable yet");
            false
        }
    };
    if done && let Ok(mut nodes) = m.nodes_done.lock() {
        nodes.insert(name.clone());
    }
    done
}
