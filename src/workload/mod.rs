//! Workload clusters, reached with the kubeconfig Cluster API keeps in the `<cluster>-kubeconfig`
//! Secret (key `value`). No cloud controller runs in these clusters, so the provider does its
//! part for each Node, as CAPD does: it sets `spec.providerID`, and when the cluster runs its
//! kubelets with an external cloud provider (the Node carries
//! `node.cloudprovider.kubernetes.io/uninitialized`), it sets the Node's addresses and removes
//! that taint, which would otherwise keep every ordinary Pod off the Node.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// What became of a Node's provider ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderId {
    /// Set now, or found set to the same value.
    Set,
    /// The Node has not registered yet.
    NoNode,
    /// The cluster's kubeconfig Secret does not exist yet.
    NoKubeconfig,
    /// The Node carries another provider ID (immutable once set).
    Conflict(String),
}

/// Why the workload cluster could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig in the Secret is unusable.
    #[error("the kubeconfig in Secret {secret} is unusable: {reason}")]
    Kubeconfig { secret: String, reason: String },
    /// The API server of either cluster refused or did not answer.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// A client for the workload cluster `cluster` in `namespace`, if its kubeconfig exists.
pub async fn client(
    management: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Option<Client>, Error> {
    let name = format!("{cluster}-kubeconfig");
    let Some(secret) = Api::<Secret>::namespaced(management.clone(), namespace)
        .get_opt(&name)
        .await?
    else {
        return Ok(None);
    };
    let bad = |reason: String| Error::Kubeconfig {
        secret: name.clone(),
        reason,
    };
    let value = secret
        .data
        .and_then(|mut d| d.remove("value"))
        .ok_or_else(|| bad("no key \"value\"".into()))?;
    let text = String::from_utf8(value.0).map_err(|_| bad("not UTF-8".into()))?;
    // Parse errors can quote the document, which holds credentials: keep only their kind.
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|_| bad("not a kubeconfig".into()))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|_| bad("no usable context, cluster or user".into()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    Client::try_from(config)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// The taint a kubelet started with `--cloud-provider=external` puts on its Node until a cloud
/// controller has initialized it.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// Sets `spec.providerID` of the Node `node` to `id` unless it already has one, and initializes
/// it as a cloud controller would when it waits for one (addresses set, then the taint removed).
pub async fn set_provider_id(
    workload: &Client,
    node: &str,
    id: &str,
    addresses: &[(&str, &str)],
) -> Result<ProviderId, Error> {
    let nodes: Api<Node> = Api::all(workload.clone());
    let Some(current) = nodes.get_opt(node).await? else {
        return Ok(ProviderId::NoNode);
    };
    let spec = current.spec.clone().unwrap_or_default();
    let outcome = match spec.provider_id.filter(|p| !p.is_empty()) {
        Some(existing) if existing == id => ProviderId::Set,
        Some(existing) => return Ok(ProviderId::Conflict(existing)),
        None => ProviderId::Set,
    };
    let taints = spec.taints.unwrap_or_default();
    let uninitialized = taints.iter().any(|t| t.key == UNINITIALIZED_TAINT);
    if uninitialized {
        let list: Vec<serde_json::Value> = addresses
            .iter()
            .map(|(type_, address)| serde_json::json!({"type": type_, "address": address}))
            .collect();
        let patch = serde_json::json!({"status": {"addresses": list}});
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let needs_id = current
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.as_deref())
        .is_none_or(str::is_empty);
    if needs_id || uninitialized {
        let kept: Vec<_> = taints
            .into_iter()
            .filter(|t| t.key != UNINITIALIZED_TAINT)
            .collect();
        // The resourceVersion guards the taint list, which a merge patch replaces whole.
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"providerID": id, "taints": kept},
        });
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(outcome)
}
