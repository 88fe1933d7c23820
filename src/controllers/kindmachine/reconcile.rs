//! One reconcile of a KindMachine: contract checks, the waits, the node container, the load
//! balancer's backends, the bootstrap, and the provider ID.

use std::sync::Arc;

use capkind_api::capi::{CLUSTER_NAME_LABEL, Cluster, Machine};
use capkind_api::v1beta1::{KindCluster, KindMachine, MachineAddress, MachineAddressType};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{Span, info, instrument};

use super::bootstrap::{self, State};
use super::status::{
    self, BOOTSTRAP_EXEC_SUCCEEDED, CONTAINER_PROVISIONED, Findings, problem, waiting,
};
use crate::capi::{self, conditions::Cond};
use crate::controllers::{self, Context, Error};
use crate::docker::{Container, ContainerRuntime, labels};
use crate::node;

/// The KindMachine finalizer.
pub const FINALIZER: &str = "kindmachine.infrastructure.cluster.x-k8s.io";

/// Everything the reconcile looked up.
struct Inputs {
    machine: Machine,
    cluster_name: String,
    cluster: Option<Cluster>,
    container: String,
}

/// Reconciles one KindMachine.
#[instrument(skip_all, fields(controller = "kindmachine", namespace = km.namespace(), name = km.name_any(), cluster))]
pub async fn reconcile<D: ContainerRuntime + Clone>(
    km: Arc<KindMachine>,
    ctx: Arc<Context<D>>,
) -> Result<Action, Error> {
    let ns = km.namespace().unwrap_or_default();
    let api: Api<KindMachine> = Api::namespaced(ctx.client.clone(), &ns);
    if capi::is_externally_managed(&km.metadata) {
        return Ok(Action::await_change());
    }
    let cache = ctx.cache.get();
    let machine = match capi::owner(&km.metadata, "Machine") {
        Some(owner) => {
            controllers::read(cache.map(|c| &c.machines), &ctx.client, &ns, &owner.name).await?
        }
        None => None,
    };
    let Some(machine) = machine else {
        if km.meta().deletion_timestamp.is_some() {
            controllers::remove_finalizer(&api, &km, FINALIZER).await?;
        }
        info!("waiting for Cluster API to set the owner Machine");
        return Ok(Action::await_change());
    };
    let cluster_name = machine
        .labels()
        .get(CLUSTER_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| machine.spec.cluster_name.clone());
    Span::current().record("cluster", cluster_name.as_str());
    let cluster =
        controllers::read(cache.map(|c| &c.clusters), &ctx.client, &ns, &cluster_name).await?;
    let paused = cluster.as_ref().is_some_and(Cluster::is_paused);
    if let Some(message) = capi::paused_message(paused, &km.metadata, "KindMachine") {
        controllers::apply_status(
            &api,
            &km,
            km.status.as_ref(),
            &status::paused(&km, &message, &now()),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let container = node::container_name(&cluster_name, &machine.name_any());
    let inputs = Inputs {
        machine,
        cluster_name,
        cluster,
        container,
    };
    let result = if km.meta().deletion_timestamp.is_some() {
        delete(&km, &api, &ctx, &inputs).await
    } else {
        controllers::add_finalizer(&api, &km, FINALIZER).await?;
        provision(&km, &api, &ctx, &inputs).await
    };
    match result {
        Ok(action) => {
            ctx.succeeded(&controllers::key(km.as_ref()));
            Ok(action)
        }
        // Not a failure: retried at once with the object as it is now (controllers::counted).
        Err(error) if error.is_conflict() => Err(error),
        Err(error) => {
            let findings = Findings {
                container: problem(CONTAINER_PROVISIONED, error.reason(), error.to_string()),
                bootstrap: current_bootstrap_cond(&km),
                addresses: None,
                failure_domain: inputs.machine.spec.failure_domain.clone(),
            };
            let st = status::status(&km, &findings, &now());
            if controllers::apply_status(&api, &km, km.status.as_ref(), &st)
                .await
                .unwrap_or(false)
            {
                ctx.event(
                    km.as_ref(),
                    EventType::Warning,
                    error.reason(),
                    error.to_string(),
                )
                .await;
            }
            Err(error)
        }
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The bootstrap condition as last written, so that an unrelated error does not reset it.
fn current_bootstrap_cond(km: &KindMachine) -> Cond {
    let found = km
        .status
        .as_ref()
        .and_then(|s| s.v1beta2.as_ref())
        .and_then(|v| {
            v.conditions
                .iter()
                .find(|c| c.type_ == BOOTSTRAP_EXEC_SUCCEEDED)
                .cloned()
        });
    match found {
        Some(c) if c.status == "True" => Cond::ok(BOOTSTRAP_EXEC_SUCCEEDED, &c.reason, c.message),
        Some(c) => waiting(BOOTSTRAP_EXEC_SUCCEEDED, &c.reason, c.message),
        None => waiting(
            BOOTSTRAP_EXEC_SUCCEEDED,
            "WaitingForContainer",
            "Waiting for the node container",
        ),
    }
}

fn owner_of(km: &KindMachine) -> labels::Owner {
    labels::Owner {
        kind: "KindMachine".into(),
        namespace: km.namespace().unwrap_or_default(),
        name: km.name_any(),
        uid: km.uid().unwrap_or_default(),
    }
}

/// The provider ID of a node: `kind://<cluster>/kind/<container>`.
pub fn provider_id(cluster: &str, container: &str) -> String {
    format!("kind://{cluster}/kind/{container}")
}

async fn write<D>(
    ctx: &Context<D>,
    api: &Api<KindMachine>,
    km: &KindMachine,
    findings: &Findings,
) -> Result<bool, Error> {
    ctx.metrics
        .machine_phase(&controllers::key(km), Some(status::phase(findings)));
    let st = status::status(km, findings, &now());
    Ok(controllers::apply_status(api, km, km.status.as_ref(), &st).await?)
}

async fn provision<D: ContainerRuntime + Clone>(
    km: &KindMachine,
    api: &Api<KindMachine>,
    ctx: &Context<D>,
    inputs: &Inputs,
) -> Result<Action, Error> {
    let name = &inputs.container;
    if name.len() > crate::node::MAX_HOSTNAME {
        return Err(Error::NameTooLong { name: name.clone() });
    }
    let existing = ctx.docker.inspect(name).await?;
    if let Some(c) = &existing
        && !owner_of(km).owns(&c.labels)
    {
        return Err(Error::name_conflict(name, &c.labels));
    }
    let fd = inputs.machine.spec.failure_domain.clone();
    let bootstrap_cond = current_bootstrap_cond(km);
    // Provisioned once: a lost container is reported, never silently re-created and bootstrapped.
    if km.spec.provider_id.is_some() && !existing.as_ref().is_some_and(|c| c.running) {
        let (reason, message) = match &existing {
            None => (
                "ContainerDeleted",
                format!("Container {name} no longer exists"),
            ),
            Some(c) => (
                "ContainerStopped",
                format!(
                    "Container {name} is not running anymore (state {})",
                    c.state
                ),
            ),
        };
        // A stopped API server leaves the load balancer now, not when haproxy's checks notice.
        if inputs.machine.is_control_plane()
            && let Ok(kc) = kind_cluster(ctx, inputs).await
        {
            let ipv6 = inputs.cluster.as_ref().is_some_and(Cluster::is_ipv6);
            controllers::backends::reconfigure(ctx, &kc, &inputs.cluster_name, ipv6).await?;
        }
        let findings = Findings {
            container: problem(CONTAINER_PROVISIONED, reason, message),
            bootstrap: bootstrap_cond,
            addresses: None,
            failure_domain: fd,
        };
        write(ctx, api, km, &findings).await?;
        return Ok(Action::await_change());
    }
    let created_now = existing.is_none();
    let container = match existing {
        Some(c) if c.running => c,
        Some(_) => {
            match ctx.docker.start(name).await {
                Ok(()) => {}
                // Removed meanwhile (a deletion under way): its events bring the next look.
                Err(e) if e.is_not_found() => {
                    tracing::debug!(container = %name, "container gone while starting it");
                    return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                }
                Err(e) => return Err(e.into()),
            }
            ctx.docker
                .inspect(name)
                .await?
                .ok_or_else(|| Error::NoAddress {
                    container: name.clone(),
                    network: String::new(),
                })?
        }
        None => match wait_reason(inputs) {
            Some((reason, message)) => {
                let findings = Findings {
                    container: waiting(CONTAINER_PROVISIONED, reason, message),
                    bootstrap: waiting(
                        BOOTSTRAP_EXEC_SUCCEEDED,
                        "WaitingForContainer",
                        "Waiting for the node container",
                    ),
                    addresses: None,
                    failure_domain: fd,
                };
                write(ctx, api, km, &findings).await?;
                return Ok(Action::await_change());
            }
            None => match create(km, ctx, inputs).await? {
                Some(created) => created,
                None => return Ok(Action::requeue(std::time::Duration::from_secs(1))),
            },
        },
    };
    let kc = kind_cluster(ctx, inputs).await?;
    let addresses = addresses(&container, &ctx.network(&kc))?;
    if inputs.machine.is_control_plane() {
        let ipv6 = inputs.cluster.as_ref().is_some_and(Cluster::is_ipv6);
        controllers::backends::reconfigure(ctx, &kc, &inputs.cluster_name, ipv6).await?;
    }
    let running = Cond::ok(
        CONTAINER_PROVISIONED,
        "Provisioned",
        format!("Container {name} is running"),
    );
    let bootstrap = bootstrap(km, ctx, inputs, created_now).await?;
    let succeeded = bootstrap.status == capkind_api::v1beta1::ConditionStatus::True;
    if succeeded && km.spec.provider_id.is_none() {
        let id = provider_id(&inputs.cluster_name, name);
        let patch = serde_json::json!({"spec": {"providerID": id}});
        api.patch(
            &km.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        info!(provider_id = %id, "node provisioned");
    }
    let findings_bootstrapping = bootstrap.reason == "Bootstrapping";
    let findings = Findings {
        container: running,
        bootstrap,
        addresses: Some(addresses.clone()),
        failure_domain: fd,
    };
    write(ctx, api, km, &findings).await?;
    // After the status: the machine is ready whether or not its Node has registered yet.
    let node_pending = succeeded && !node_provider_id(km, ctx, inputs, &addresses).await;
    Ok(if node_pending {
        // The Node registers once kubeadm is done; look again without holding a worker.
        Action::requeue(std::time::Duration::from_secs(5))
    } else if succeeded {
        Action::requeue(ctx.sync_period)
    } else if findings_bootstrapping {
        // The bootstrap runs inside the node, and a task waits there for its end and wakes
        // this machine up (bootstrap::wake_on_progress); this look is only a safety net.
        Action::requeue(std::time::Duration::from_secs(30))
    } else {
        Action::await_change()
    })
}

/// Sets the provider ID on the workload cluster's Node; true once it is there. Failures are
/// logged and retried: the machine itself is provisioned either way.
async fn node_provider_id<D>(
    km: &KindMachine,
    ctx: &Context<D>,
    inputs: &Inputs,
    addresses: &[MachineAddress],
) -> bool {
    let name = &inputs.container;
    if ctx.nodes_done.lock().is_ok_and(|done| done.contains(name)) {
        return true;
    }
    let id = provider_id(&inputs.cluster_name, name);
    let ns = km.namespace().unwrap_or_default();
    // In the kubelet's order: the address first, then the hostname.
    let of_type = |t: MachineAddressType, name: &'static str| {
        addresses
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| (name, a.address.as_str()))
    };
    let addresses: Vec<(&str, &str)> = [
        of_type(MachineAddressType::InternalIP, "InternalIP"),
        of_type(MachineAddressType::Hostname, "Hostname"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let outcome = match crate::workload::client(&ctx.client, &ns, &inputs.cluster_name).await {
        Ok(Some(workload)) => {
            crate::workload::set_provider_id(&workload, name, &id, &addresses).await
        }
        Ok(None) => Ok(crate::workload::ProviderId::NoKubeconfig),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(crate::workload::ProviderId::Set) => {
            info!(node = %name, provider_id = %id, "workload Node has its provider ID");
            if let Ok(mut done) = ctx.nodes_done.lock() {
                done.insert(name.clone());
            }
            true
        }
        Ok(crate::workload::ProviderId::Conflict(existing)) => {
            let note = format!("Node {name} already has provider ID {existing}, not {id}");
            ctx.event(km, EventType::Warning, "NodeProviderIDConflict", note)
                .await;
            if let Ok(mut done) = ctx.nodes_done.lock() {
                done.insert(name.clone());
            }
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
    }
}

/// What the machine still waits for before its container may be created.
fn wait_reason(inputs: &Inputs) -> Option<(&'static str, &'static str)> {
    let cluster = inputs.cluster.as_ref();
    if !cluster.is_some_and(Cluster::infrastructure_ready) {
        return Some((
            "WaitingForClusterInfrastructure",
            "Waiting for the cluster's infrastructure to be ready",
        ));
    }
    if inputs.machine.spec.bootstrap.data_secret_name.is_none() {
        return Some((
            "WaitingForBootstrapData",
            "Waiting for the bootstrap provider to write the bootstrap data",
        ));
    }
    if !inputs.machine.is_control_plane()
        && !cluster.is_some_and(Cluster::control_plane_initialized)
    {
        return Some((
            "WaitingForControlPlaneInitialized",
            "Waiting for the control plane to be initialized",
        ));
    }
    None
}

async fn kind_cluster<D>(ctx: &Context<D>, inputs: &Inputs) -> Result<KindCluster, Error> {
    let ns = inputs.machine.namespace().unwrap_or_default();
    let name = inputs
        .cluster
        .as_ref()
        .and_then(|c| c.spec.infrastructure_ref.as_ref())
        .and_then(|r| r.name.clone())
        .unwrap_or_else(|| inputs.cluster_name.clone());
    let cache = ctx.cache.get().map(|c| &c.kind_clusters);
    controllers::read(cache, &ctx.client, &ns, &name)
        .await?
        .ok_or_else(|| Error::KindClusterNotFound { name })
}

/// Creates and starts the node container. `None` when the name turned out to be taken by a
/// container that appeared or went meanwhile (another manager's, or one being removed): the
/// next reconcile looks at it afresh, ownership included.
async fn create<D: ContainerRuntime>(
    km: &KindMachine,
    ctx: &Context<D>,
    inputs: &Inputs,
) -> Result<Option<Container>, Error> {
    let kc = kind_cluster(ctx, inputs).await?;
    let image = node::image(
        km.spec.custom_image.as_deref(),
        inputs.machine.spec.version.as_deref(),
    )?;
    let Some(image_command) = ctx.docker.image_command(&image).await? else {
        return Err(Error::ImageMissing { image });
    };
    let network = ctx.network(&kc);
    ctx.docker.ensure_network(&network).await?;
    let owner = owner_of(km);
    let proxy = node::proxy_env_from_process();
    let spec = node::container_spec(&node::Params {
        cluster: &inputs.cluster_name,
        name: &inputs.container,
        image: &image,
        network: &network,
        control_plane: inputs.machine.is_control_plane(),
        failure_domain: inputs.machine.spec.failure_domain.as_deref(),
        extra_mounts: &km.spec.extra_mounts,
        owner: &owner,
        privileges: ctx.node_privileges,
        proxy_env: &proxy,
        image_command: &image_command,
    });
    let name = &inputs.container;
    match ctx.docker.create(&spec).await {
        Ok(_) => {}
        Err(crate::docker::Error::Conflict { .. }) => {
            tracing::debug!(container = %name, "the name is taken meanwhile; looking again");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    match ctx.docker.start(name).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            let _ = ctx.docker.remove(name).await;
            return Err(e.into());
        }
    }
    info!(container = %name, %image, "node container created");
    ctx.event(
        km,
        EventType::Normal,
        "ContainerCreated",
        format!("Created container {name} from {image}"),
    )
    .await;
    Ok(ctx.docker.inspect(name).await?)
}

fn addresses(c: &Container, network: &str) -> Result<Vec<MachineAddress>, Error> {
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
async fn preload_images<D: ContainerRuntime>(
    km: &KindMachine,
    ctx: &Context<D>,
    container: &str,
) -> Result<(), Error> {
    for image in &km.spec.pre_load_images {
        if !ctx.docker.image_exists(image).await? {
            return Err(Error::ImageMissing {
                image: image.clone(),
            });
        }
        let cmd = [
            "ctr",
            "--namespace=k8s.io",
            "images",
            "import",
            "--all-platforms",
            "-",
        ];
        let out = ctx.docker.pipe_image(image, container, &cmd).await?;
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

/// Starts the bootstrap once, or reports where it stands; `created_now` when this reconcile
/// created the container (nothing can have started in it yet, so there is no need to look).
async fn bootstrap<D: ContainerRuntime + Clone>(
    km: &KindMachine,
    ctx: &Context<D>,
    inputs: &Inputs,
    created_now: bool,
) -> Result<Cond, Error> {
    let name = &inputs.container;
    let timeout = km.spec.bootstrap_timeout()?.as_secs();
    let before = current_bootstrap_cond(km);
    // Done is done: the status says so, and nothing inside the node is looked at again (a
    // restarted node container has lost /run, but its bootstrap must not run again).
    if before.reason == "BootstrapSucceeded" && km.spec.provider_id.is_some() {
        return Ok(before);
    }
    // A task waits inside the node for the next step; it wakes this machine up then, with
    // what it saw (so this reconcile need not look inside the node again).
    let seen = bootstrap::take_seen(&ctx.bootstrap_waits, name);
    if before.reason == "Bootstrapping" && seen == bootstrap::Seen::Waiting {
        return Ok(before);
    }
    let wake_on_progress = |step: usize, elapsed: u64| {
        let (wake, key) = (
            ctx.wake.clone(),
            (km.namespace().unwrap_or_default(), km.name_any()),
        );
        let limit = timeout.saturating_sub(elapsed).min(120) + 1;
        bootstrap::wake_on_progress(
            &ctx.docker,
            name,
            step,
            limit,
            &ctx.bootstrap_waits,
            move || {
                let _ = wake.send(key);
            },
        );
    };
    let state = match seen {
        _ if created_now => State::NotStarted,
        bootstrap::Seen::Returned(text) => {
            bootstrap::interpret(&ctx.docker, name, timeout, &text).await?
        }
        _ => bootstrap::observe(&ctx.docker, name, timeout).await?,
    };
    Ok(match state {
        State::NotStarted => {
            preload_images(km, ctx, name).await?;
            let secret_name = inputs
                .machine
                .spec
                .bootstrap
                .data_secret_name
                .clone()
                .unwrap_or_default();
            let secret =
                Api::<Secret>::namespaced(ctx.client.clone(), &km.namespace().unwrap_or_default())
                    .get_opt(&secret_name)
                    .await?;
            let data = secret.and_then(|s| s.data).unwrap_or_default();
            let value = data
                .get("value")
                .ok_or_else(|| Error::BootstrapSecretMissing {
                    name: secret_name.clone(),
                })?;
            let format = data
                .get("format")
                .map(|f| String::from_utf8_lossy(&f.0).into_owned());
            let plan = crate::bootstrap::plan(format.as_deref(), &value.0)?;
            bootstrap::start(&ctx.docker, name, &plan).await?;
            wake_on_progress(0, 0);
            info!(container = %name, steps = plan.len(), ignored = ?plan.ignored, "bootstrap started");
            ctx.event(
                km,
                EventType::Normal,
                "BootstrapStarted",
                format!("Bootstrap of {name} started ({} steps)", plan.len()),
            )
            .await;
            waiting(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "Bootstrapping",
                "Bootstrap started",
            )
        }
        State::Running { step, of, elapsed } => {
            wake_on_progress(step, elapsed);
            let message = if step == 0 {
                "Waiting for the node's systemd to boot before the bootstrap".to_string()
            } else {
                format!("Running bootstrap step {step} of {of}")
            };
            waiting(BOOTSTRAP_EXEC_SUCCEEDED, "Bootstrapping", message)
        }
        State::Succeeded { elapsed } => {
            if km.spec.provider_id.is_none() {
                ctx.metrics.bootstrap_succeeded(elapsed);
                ctx.event(
                    km,
                    EventType::Normal,
                    "BootstrapSucceeded",
                    format!("Bootstrap of {name} succeeded"),
                )
                .await;
            }
            Cond::ok(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "BootstrapSucceeded",
                "The bootstrap data ran to completion",
            )
        }
        State::Failed { message } => {
            let cond = problem(BOOTSTRAP_EXEC_SUCCEEDED, "BootstrapFailed", message.clone());
            if before.reason != cond.reason {
                tracing::warn!(container = %name, ?message, "bootstrap failed");
                ctx.event(km, EventType::Warning, "BootstrapFailed", message)
                    .await;
            }
            cond
        }
        State::Interrupted { step, of } => {
            let cond = problem(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "BootstrapInterrupted",
                format!(
                    "The node container {name} restarted while its bootstrap ran step {step} of {of}; \
                     a bootstrap never runs twice, so the machine stays as it is: delete the Machine to replace it"
                ),
            );
            if before.reason != cond.reason {
                tracing::warn!(container = %name, step, of, "bootstrap interrupted by a node restart");
                ctx.event(
                    km,
                    EventType::Warning,
                    "BootstrapInterrupted",
                    cond.message.clone(),
                )
                .await;
            }
            cond
        }
        State::TimedOut { after } => {
            let cond = problem(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "BootstrapTimedOut",
                format!("The bootstrap did not finish within {after}s"),
            );
            if before.reason != cond.reason {
                tracing::warn!(container = %name, message = %cond.message, "bootstrap timed out");
                ctx.event(
                    km,
                    EventType::Warning,
                    "BootstrapTimedOut",
                    cond.message.clone(),
                )
                .await;
            }
            cond
        }
    })
}

async fn delete<D: ContainerRuntime>(
    km: &KindMachine,
    api: &Api<KindMachine>,
    ctx: &Context<D>,
    inputs: &Inputs,
) -> Result<Action, Error> {
    let name = &inputs.container;
    if let Ok(mut done) = ctx.nodes_done.lock() {
        done.remove(name);
    }
    let findings = Findings {
        container: waiting(
            CONTAINER_PROVISIONED,
            "Deleting",
            format!("Removing container {name}"),
        ),
        bootstrap: current_bootstrap_cond(km),
        addresses: None,
        failure_domain: inputs.machine.spec.failure_domain.clone(),
    };
    write(ctx, api, km, &findings).await?;
    match ctx.docker.inspect(name).await? {
        Some(c) if owner_of(km).owns(&c.labels) => {
            ctx.docker.remove(name).await?;
            info!(container = %name, "node container removed");
            ctx.event(
                km,
                EventType::Normal,
                "ContainerDeleted",
                format!("Removed container {name}"),
            )
            .await;
        }
        Some(_) => info!(container = %name, "a container of that name is not ours; leaving it"),
        None => {}
    }
    if inputs.machine.is_control_plane()
        && let Ok(kc) = kind_cluster(ctx, inputs).await
    {
        let ipv6 = inputs.cluster.as_ref().is_some_and(Cluster::is_ipv6);
        controllers::backends::reconfigure(ctx, &kc, &inputs.cluster_name, ipv6).await?;
    }
    controllers::remove_finalizer(api, km, FINALIZER).await?;
    ctx.metrics.machine_phase(&controllers::key(km), None);
    Ok(Action::await_change())
}
