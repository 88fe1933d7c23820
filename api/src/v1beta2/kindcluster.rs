//! KindCluster v1beta2: the infrastructure of one Cluster API cluster, a Docker network and an
//! haproxy load-balancer container in front of the control-plane nodes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::v1beta1::{
    DEFAULT_API_SERVER_PORT, DEFAULT_LB_IMAGE_REPOSITORY, DEFAULT_LB_IMAGE_TAG, DEFAULT_NETWORK,
    LoadBalancerSpec,
};

use super::common::{Deprecated, FailureDomain, Initialization};

/// KindClusterSpec describes the infrastructure of a cluster whose nodes are Docker containers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "KindCluster",
    plural = "kindclusters",
    namespaced,
    status = "KindClusterStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    doc = "KindCluster is the infrastructure of a Cluster API cluster built from Docker containers: a Docker network and an haproxy load balancer in front of the control plane.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']","description":"Cluster to which this KindCluster belongs"}"#,
    printcolumn = r#"{"name":"Provisioned","type":"boolean","jsonPath":".status.initialization.provisioned","description":"The load balancer is running and the control-plane endpoint is set"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.controlPlaneEndpoint.host","description":"Address of the control-plane load balancer"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterSpec {
    /// The endpoint used to reach the control plane. The controller fills in the host with the
    /// load balancer's address on the Docker network when it is empty; the port (defaulted to
    /// 6443 by the webhook) is the load balancer's frontend port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<ApiEndpoint>,

    /// The haproxy load-balancer container in front of the control-plane nodes.
    #[serde(default)]
    pub load_balancer: LoadBalancerSpec,

    /// The Docker network the load balancer and the nodes are attached to; created when
    /// missing. Defaults to the manager's --docker-network, which defaults to kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub network: Option<String>,

    /// Failure domains, sorted by name. They are copied to status so that Cluster API can
    /// spread control-plane machines over them; the nodes are labelled with their failure domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub failure_domains: Vec<FailureDomain>,
}

/// An endpoint where an API server can be reached.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    /// The hostname or IP address of the endpoint. Left out, the controller sets it to the load
    /// balancer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub host: Option<String>,

    /// The port of the endpoint, 1 to 65535. The webhook defaults it to 6443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

impl ApiEndpoint {
    /// The port, 6443 when unset.
    pub fn port(&self) -> i32 {
        self.port.unwrap_or(DEFAULT_API_SERVER_PORT)
    }
}

/// KindClusterStatus is what the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterStatus {
    /// Initialization state: provisioned once the load balancer runs and the control-plane
    /// endpoint is set; never set back to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<Initialization>,

    /// The failure domains Cluster API may use, copied from the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub failure_domains: Vec<FailureDomain>,

    /// Conditions: Ready, LoadBalancerAvailable and Paused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::common::conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Fields kept for readers of the v1beta1 contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecated>,
}

super::common::impl_provisioned!(KindCluster, "cluster infrastructure");
