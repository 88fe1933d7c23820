//! Workload clusters, reached with the kubeconfig Cluster API keeps in the `<cluster>-kubeconfig`
//! Secret (key `value`). No cloud controller runs in these clusters, so the provider sets each
//! Node's `spec.providerID` itself, as CAPD does.

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

/// Sets `spec.providerID` of the Node `node` to `id` unless it already has one.
pub async fn set_provider_id(workload: &Client, node: &str, id: &str) -> Result<ProviderId, Error> {
    let nodes: Api<Node> = Api::all(workload.clone());
    let Some(current) = nodes.get_opt(node).await? else {
        return Ok(ProviderId::NoNode);
    };
    match current
        .spec
        .and_then(|s| s.provider_id)
        .filter(|p| !p.is_empty())
    {
        Some(existing) if existing == id => Ok(ProviderId::Set),
        Some(existing) => Ok(ProviderId::Conflict(existing)),
        None => {
            let patch = serde_json::json!({"spec": {"providerID": id}});
            nodes
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(ProviderId::Set)
        }
    }
}
