//! The load balancer's configuration, as both controllers write it: the KindCluster controller
//! when the load balancer is (re)created, the KindMachine controller when control-plane nodes
//! come and go. Both compute it the same way, so they never undo each other's writes.

use capkind_api::capi::{CLUSTER_NAME_LABEL, CONTROL_PLANE_LABEL, Machine};
use capkind_api::v1beta2::KindCluster;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Context, Error};
use crate::docker::ContainerRuntime;
use crate::loadbalancer::{self, config};
use crate::node;

/// Renders the configuration for the cluster's running control-plane nodes (weight 0 for those
/// whose Machine is being deleted, so they drain) and puts it in place when it changed.
pub async fn reconfigure<D: ContainerRuntime>(
    ctx: &Context<D>,
    machines: Option<&Store<Machine>>,
    kc: &KindCluster,
    cluster: &str,
    ipv6: bool,
) -> Result<(), Error> {
    let namespace = kc.namespace().unwrap_or_default();
    let template = match &kc.spec.load_balancer.custom_haproxy_config_template_ref {
        None => config::DEFAULT_TEMPLATE.to_string(),
        Some(r) => Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&r.name)
            .await?
            .and_then(|cm| cm.data)
            .and_then(|mut d| d.remove("value"))
            .ok_or_else(|| Error::TemplateNotFound {
                name: r.name.clone(),
            })?,
    };
    let draining = draining_nodes(ctx, machines, &namespace, cluster).await?;
    let backends =
        loadbalancer::backends(&ctx.docker, cluster, &ctx.network(kc), &draining).await?;
    let input = config::Input {
        frontend_port: loadbalancer::frontend_port(kc),
        ipv6,
        backends,
    };
    let rendered = config::render(&template, &input)?;
    let written = match loadbalancer::write_config(
        &ctx.docker,
        &loadbalancer::container_name(cluster),
        &rendered,
    )
    .await
    {
        // Restarted meanwhile: its start brings the KindCluster's reconcile, which writes it.
        Err(loadbalancer::Error::NotRunning { container }) => {
            tracing::debug!(%container, "load balancer not running; configured when it starts");
            false
        }
        other => other?,
    };
    if written {
        let servers: Vec<String> = input
            .backends
            .iter()
            .map(|b| format!("{}={}", b.name, b.weight))
            .collect();
        info!(
            cluster,
            ?servers,
            "load balancer configuration written and reloaded"
        );
    }
    Ok(())
}

/// The node containers of the cluster's control-plane Machines that are being deleted.
async fn draining_nodes<D>(
    ctx: &Context<D>,
    machines: Option<&Store<Machine>>,
    namespace: &str,
    cluster: &str,
) -> Result<Vec<String>, Error> {
    let deleting = |m: &Machine| m.meta().deletion_timestamp.is_some();
    let name = |m: &Machine| node::container_name(cluster, &m.name_any());
    // The KindMachine controller's cache of Machines, once it holds its first full list.
    if let Some(cache) = machines
        && super::is_ready(cache)
    {
        return Ok(cache
            .state()
            .iter()
            .filter(|m| {
                m.namespace().as_deref() == Some(namespace)
                    && m.labels().get(CLUSTER_NAME_LABEL).map(String::as_str) == Some(cluster)
                    && m.labels().contains_key(CONTROL_PLANE_LABEL)
                    && deleting(m)
            })
            .map(|m| name(m))
            .collect());
    }
    let selector = format!("{CLUSTER_NAME_LABEL}={cluster},{CONTROL_PLANE_LABEL}");
    let machines = ctx
        .machines(namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    Ok(machines
        .items
        .iter()
        .filter(|m| deleting(m))
        .map(name)
        .collect())
}
