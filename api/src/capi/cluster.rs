//! Cluster (cluster.x-k8s.io/v1beta1), as far as the provider reads it.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use crate::v1beta1::{Condition, ConditionStatus, V1Beta2Status};

/// The condition core sets once the control plane's first node is up.
pub const CONTROL_PLANE_INITIALIZED: &str = "ControlPlaneInitialized";

/// The spec of a Cluster API Cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cluster.x-k8s.io",
    version = "v1beta1",
    kind = "Cluster",
    plural = "clusters",
    namespaced,
    status = "ClusterStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Pauses reconciliation of the cluster and everything in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// The cluster's network settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_network: Option<ClusterNetwork>,
    /// The control-plane provider's object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_ref: Option<ObjectReference>,
    /// The infrastructure provider's object (a KindCluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_ref: Option<ObjectReference>,
}

/// Pod and service networks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// Pod network ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NetworkRanges>,
    /// Service network ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<NetworkRanges>,
}

/// A list of CIDR blocks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRanges {
    /// The CIDR blocks.
    #[serde(default)]
    pub cidr_blocks: Vec<String>,
}

/// The status of a Cluster API Cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The infrastructure (our KindCluster) is ready.
    #[serde(default)]
    pub infrastructure_ready: bool,
    /// The control plane is ready.
    #[serde(default)]
    pub control_plane_ready: bool,
    /// v1beta1 conditions, among them ControlPlaneInitialized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// v1beta2 conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta2: Option<V1Beta2Status>,
}

impl Cluster {
    /// Whether `spec.paused` is set.
    pub fn is_paused(&self) -> bool {
        self.spec.paused.unwrap_or(false)
    }

    /// Whether the cluster's pod or service networks are IPv6 (IPv6-only or dual-stack), so the
    /// load balancer must listen on IPv6 too.
    pub fn is_ipv6(&self) -> bool {
        let network = self.spec.cluster_network.as_ref();
        [
            network.and_then(|n| n.pods.as_ref()),
            network.and_then(|n| n.services.as_ref()),
        ]
        .into_iter()
        .flatten()
        .flat_map(|r| r.cidr_blocks.iter())
        .any(|cidr| cidr.contains(':'))
    }

    /// Whether the infrastructure was marked ready by core.
    pub fn infrastructure_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.infrastructure_ready)
    }

    /// Whether core reports the control plane initialized, in either condition shape.
    pub fn control_plane_initialized(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        let v1beta1 = status
            .conditions
            .iter()
            .any(|c| c.type_ == CONTROL_PLANE_INITIALIZED && c.status == ConditionStatus::True);
        let v1beta2 = status.v1beta2.as_ref().is_some_and(|v| {
            v.conditions
                .iter()
                .any(|c| c.type_ == CONTROL_PLANE_INITIALIZED && c.status == "True")
        });
        v1beta1 || v1beta2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(pods: &[&str], services: &[&str]) -> Cluster {
        let ranges = |c: &[&str]| {
            Some(NetworkRanges {
                cidr_blocks: c.iter().map(|s| s.to_string()).collect(),
            })
        };
        let mut cluster = Cluster::new("c", ClusterSpec::default());
        cluster.spec.cluster_network = Some(ClusterNetwork {
            pods: ranges(pods),
            services: ranges(services),
        });
        cluster
    }

    #[test]
    fn ip_family_from_the_cluster_networks() {
        assert!(!Cluster::new("c", ClusterSpec::default()).is_ipv6());
        assert!(!cluster(&["192.168.0.0/16"], &["10.128.0.0/12"]).is_ipv6());
        assert!(cluster(&["fd00:100:96::/48"], &["fd00:100:64::/108"]).is_ipv6());
        assert!(
            cluster(&["192.168.0.0/16", "fd00:100:96::/48"], &["10.128.0.0/12"]).is_ipv6(),
            "dual-stack"
        );
    }
}
