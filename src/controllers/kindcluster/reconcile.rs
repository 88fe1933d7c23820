//! One reconcile of a KindCluster: contract checks, then the load balancer (network, container,
//! configuration), the control-plane endpoint and the status.

use std::net::IpAddr;
use std::sync::Arc;

use capkind_api::capi::Cluster;
use capkind_api::v1beta2::{ApiEndpoint, KindCluster};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{Span, info, instrument};

use super::status::{self, LoadBalancer};
use crate::capi;
use crate::controllers::contract::Contract;
use crate::controllers::{self, Context, Error};
use crate::docker::{Container, ContainerRuntime, labels};
use crate::loadbalancer;

/// The KindCluster finalizer.
pub const FINALIZER: &str = "kindcluster.infrastructure.cluster.x-k8s.io";

/// Reconciles one KindCluster.
#[instrument(skip_all, fields(controller = "kindcluster", controllerGroup = controllers::GROUP, controllerKind = "KindCluster", namespace = kc.namespace(), name = kc.name_any(), reconcileID = %controllers::reconcile_id(), cluster))]
pub async fn reconcile<D: ContainerRuntime + Clone>(
    kc: Arc<KindCluster>,
    ctx: Arc<Context<D>>,
) -> Result<Action, Error> {
    let api: Api<KindCluster> =
        Api::namespaced(ctx.client.clone(), &kc.namespace().unwrap_or_default());
    let contract = Contract::new(&api, kc.as_ref(), FINALIZER);
    if contract.externally_managed() {
        return Ok(Action::await_change());
    }
    let Some(owner) = capi::owner(&kc.metadata, "Cluster").cloned() else {
        return contract.without_owner("Cluster").await;
    };
    Span::current().record("cluster", owner.name.as_str());
    let cluster = ctx
        .clusters(&kc.namespace().unwrap_or_default())
        .get_opt(&owner.name)
        .await?;
    let cluster_paused = cluster.as_ref().is_some_and(Cluster::is_paused);
    if let Some(message) = capi::paused_message(cluster_paused, &kc.metadata, "KindCluster") {
        let st = status::paused(&kc, &message, &now());
        return contract.paused(kc.status.as_ref(), &st).await;
    }
    let result = match contract.delete_or_finalize().await {
        Ok(true) => delete(&kc, &api, &ctx, &owner.name).await,
        Ok(false) => {
            let ipv6 = cluster.as_ref().is_some_and(Cluster::is_ipv6);
            provision(&kc, &api, &ctx, &owner.name, ipv6).await
        }
        Err(e) => Err(e),
    };
    contract
        .finish(&ctx, result, kc.status.as_ref(), |error| {
            let (reason, message) = (error.reason().to_string(), error.to_string());
            let lb = if error.is_waiting() {
                LoadBalancer::Pending { reason, message }
            } else {
                LoadBalancer::Unavailable { reason, message }
            };
            status::status(&kc, &lb, &now())
        })
        .await
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn owner_of(kc: &KindCluster) -> labels::Owner {
    labels::Owner {
        kind: "KindCluster".into(),
        namespace: kc.namespace().unwrap_or_default(),
        name: kc.name_any(),
        uid: kc.uid().unwrap_or_default(),
    }
}

async fn provision<D: ContainerRuntime + Clone>(
    kc: &KindCluster,
    api: &Api<KindCluster>,
    ctx: &Context<D>,
    cluster: &str,
    ipv6: bool,
) -> Result<Action, Error> {
    let network = ctx.docker.ensure_network(&ctx.network(kc)).await?;
    let container = ensure_container(kc, ctx, cluster).await?;
    let address = container
        .networks
        .get(&network.name)
        .and_then(|n| n.ipv4.clone())
        .ok_or_else(|| Error::NoAddress {
            container: container.name.clone(),
            network: network.name.clone(),
        })?;
    controllers::backends::reconfigure(ctx, None, kc, cluster, ipv6).await?;
    if kc
        .spec
        .control_plane_endpoint
        .as_ref()
        .and_then(|e| e.host.as_ref())
        .is_none()
    {
        let endpoint = ApiEndpoint {
            host: Some(address.clone()),
            port: Some(i32::from(loadbalancer::frontend_port(kc))),
        };
        let patch = serde_json::json!({"spec": {"controlPlaneEndpoint": endpoint}});
        api.patch(
            &kc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        info!(%address, "control-plane endpoint set");
    }
    let lb = LoadBalancer::Available {
        container: container.name.clone(),
        address,
    };
    let st = status::status(kc, &lb, &now());
    if controllers::apply_status(api, kc, kc.status.as_ref(), &st).await?
        && !status::is_ready(&kc.status.clone().unwrap_or_default())
    {
        ctx.event(
            kc,
            EventType::Normal,
            "LoadBalancerAvailable",
            format!("Load balancer {} is available", container.name),
        )
        .await;
    }
    Ok(Action::requeue(ctx.sync_period))
}

/// Makes sure this cluster's load-balancer container exists, runs, and sits at the endpoint's
/// address once one was set: started again when stopped, re-created on the same address when
/// gone or moved.
async fn ensure_container<D: ContainerRuntime + Clone>(
    kc: &KindCluster,
    ctx: &Context<D>,
    cluster: &str,
) -> Result<Container, Error> {
    let name = loadbalancer::container_name(cluster);
    if name.len() > crate::node::MAX_HOSTNAME {
        return Err(Error::NameTooLong { name });
    }
    let network = ctx.network(kc);
    let owner = owner_of(kc);
    let wanted: Option<String> = kc
        .spec
        .control_plane_endpoint
        .as_ref()
        .and_then(|e| e.host.clone())
        .filter(|h| h.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv4()));
    let at_wanted_address = |c: &Container| {
        wanted
            .as_ref()
            .is_none_or(|w| c.networks.get(&network).and_then(|n| n.ipv4.as_ref()) == Some(w))
    };
    if let Some(running) = reuse(kc, ctx, &name, &owner, &at_wanted_address).await? {
        return Ok(running);
    }
    create(kc, ctx, cluster, &network, wanted, &owner).await
}

/// The existing load balancer when it is ours, runs (started again if it was stopped) and sits
/// at the endpoint's address; otherwise it is removed and `None` returned.
async fn reuse<D: ContainerRuntime>(
    kc: &KindCluster,
    ctx: &Context<D>,
    name: &str,
    owner: &labels::Owner,
    at_wanted_address: &impl Fn(&Container) -> bool,
) -> Result<Option<Container>, Error> {
    if let Some(existing) = ctx.docker.inspect(name).await? {
        if !owner.owns(&existing.labels) {
            return Err(Error::name_conflict(name, &existing.labels));
        }
        if existing.running && at_wanted_address(&existing) {
            return Ok(Some(existing));
        }
        if !existing.running {
            ctx.docker.start(name).await?;
            let started = ctx.docker.inspect(name).await?.ok_or_else(|| gone(name))?;
            if started.running && at_wanted_address(&started) {
                ctx.event(
                    kc,
                    EventType::Normal,
                    "LoadBalancerStarted",
                    format!("Started stopped load balancer {name}"),
                )
                .await;
                return Ok(Some(started));
            }
        }
        info!(container = %name, "load balancer is not at the endpoint's address; re-creating it there");
        ctx.docker.remove(name).await?;
    }
    Ok(None)
}

/// Creates and starts the load balancer at `wanted`, or at a fixed address of our choosing.
async fn create<D: ContainerRuntime + Clone>(
    kc: &KindCluster,
    ctx: &Context<D>,
    cluster: &str,
    network: &str,
    wanted: Option<String>,
    owner: &labels::Owner,
) -> Result<Container, Error> {
    let name = loadbalancer::container_name(cluster);
    let image = kc.spec.load_balancer.image();
    ctx.images.ensure(&ctx.docker, &image).await?;
    // The endpoint's address when one is set, otherwise a fixed one of our choosing, so that
    // the endpoint written from it stays right across restarts.
    let address = match wanted {
        Some(w) => Some(w),
        None => ctx.docker.free_address(network).await?,
    };
    let spec = loadbalancer::container_spec(
        cluster,
        &image,
        network,
        loadbalancer::frontend_port(kc),
        address,
        owner,
    );
    match ctx.docker.create(&spec).await {
        Ok(_) => {}
        // Another worker or an earlier, interrupted run created it: take what is there next time.
        Err(crate::docker::Error::Conflict { .. }) => {
            return ctx.docker.inspect(&name).await?.ok_or_else(|| gone(&name));
        }
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = ctx.docker.start(&name).await {
        // A container that cannot start (a port taken, an address in use) is removed, not left behind.
        let _ = ctx.docker.remove(&name).await;
        return Err(e.into());
    }
    info!(container = %name, %image, "load balancer created");
    ctx.event(
        kc,
        EventType::Normal,
        "LoadBalancerCreated",
        format!("Created load balancer {name} from {image}"),
    )
    .await;
    ctx.docker.inspect(&name).await?.ok_or_else(|| gone(&name))
}

fn gone(name: &str) -> Error {
    Error::Docker(crate::docker::Error::NotFound {
        what: format!("container {name}"),
        message: "removed while being set up".into(),
    })
}

async fn delete<D: ContainerRuntime>(
    kc: &KindCluster,
    api: &Api<KindCluster>,
    ctx: &Context<D>,
    cluster: &str,
) -> Result<Action, Error> {
    let st = status::status(kc, &LoadBalancer::Deleting, &now());
    controllers::apply_status(api, kc, kc.status.as_ref(), &st).await?;
    let name = loadbalancer::container_name(cluster);
    match ctx.docker.inspect(&name).await? {
        Some(c) if owner_of(kc).owns(&c.labels) => {
            ctx.docker.remove(&name).await?;
            info!(container = %name, "load balancer removed");
            ctx.event(
                kc,
                EventType::Normal,
                "LoadBalancerDeleted",
                format!("Removed load balancer {name}"),
            )
            .await;
        }
        Some(_) => info!(container = %name, "a container of that name is not ours; leaving it"),
        None => {}
    }
    // The machines went first (core deletes them before the KindCluster): a network the
    // provider made for this cluster is empty now, unless another cluster shares it.
    let network = ctx.network(kc);
    if ctx.docker.remove_network(&network).await? {
        info!(%network, "network removed");
    }
    controllers::remove_finalizer(api, kc, FINALIZER).await?;
    Ok(Action::await_change())
}
