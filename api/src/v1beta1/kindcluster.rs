//! KindCluster: the infrastructure of one Cluster API cluster, a Docker network and an haproxy
//! load-balancer container in front of the control-plane nodes.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Initialization, LocalObjectReference, V1Beta2Status};

/// The load-balancer image used when the spec names none (kind's haproxy image).
pub const DEFAULT_LB_IMAGE_REPOSITORY: &str = "kindest";
/// The load-balancer image tag used when the spec names none.
pub const DEFAULT_LB_IMAGE_TAG: &str = "v20230606-42a2262b";
/// The Docker network the manager uses by default (kind's own network).
pub const DEFAULT_NETWORK: &str = "kind";
/// The port the control plane is served on when the spec names none.
pub const DEFAULT_API_SERVER_PORT: i32 = 6443;

/// KindClusterSpec describes the infrastructure of a cluster whose nodes are Docker containers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta1",
    kind = "KindCluster",
    plural = "kindclusters",
    namespaced,
    status = "KindClusterStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    doc = "KindCluster is the infrastructure of a Cluster API cluster built from Docker containers: a Docker network and an haproxy load balancer in front of the control plane.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']","description":"Cluster to which this KindCluster belongs"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.ready","description":"The load balancer is running and the control-plane endpoint is set"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.controlPlaneEndpoint.host","description":"Address of the control-plane load balancer"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterSpec {
    /// The endpoint used to reach the control plane. The controller fills in the host with the
    /// load balancer's address on the Docker network when it is empty; the port is the load
    /// balancer's frontend port.
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

    /// Failure domains, by name. They are copied to status so that Cluster API can spread
    /// control-plane machines over them; the nodes are labelled with their failure domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domains: Option<BTreeMap<String, FailureDomainSpec>>,
}

/// An endpoint where an API server can be reached.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    /// The hostname or IP address of the endpoint. Left out, the controller sets it to the load
    /// balancer's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub host: Option<String>,

    /// The port of the endpoint, 1 to 65535. Defaults to 6443.
    #[serde(default = "default_api_server_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// The load-balancer container's image and configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// The repository of the haproxy image. Defaults to kindest.
    #[serde(default = "default_lb_repository")]
    #[schemars(length(min = 1))]
    pub image_repository: String,

    /// The tag of the haproxy image. Defaults to v20230606-42a2262b.
    #[serde(default = "default_lb_tag")]
    #[schemars(length(min = 1))]
    pub image_tag: String,

    /// A ConfigMap in the KindCluster's namespace whose key `value` holds a template that
    /// replaces the default haproxy configuration.
    #[serde(
        default,
        rename = "customHAProxyConfigTemplateRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub custom_haproxy_config_template_ref: Option<LocalObjectReference>,
}

impl Default for LoadBalancerSpec {
    fn default() -> Self {
        Self {
            image_repository: default_lb_repository(),
            image_tag: default_lb_tag(),
            custom_haproxy_config_template_ref: None,
        }
    }
}

impl LoadBalancerSpec {
    /// The full image reference, `<repository>/haproxy:<tag>`.
    pub fn image(&self) -> String {
        format!("{}/haproxy:{}", self.image_repository, self.image_tag)
    }
}

/// One failure domain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDomainSpec {
    /// Whether control-plane machines may be placed in this failure domain.
    #[serde(default)]
    pub control_plane: bool,

    /// Free-form attributes of the failure domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// KindClusterStatus is what the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterStatus {
    /// True once the load balancer runs and the control-plane endpoint is set (contract v1beta1).
    #[serde(default)]
    pub ready: bool,

    /// Initialization state (contract v1beta2 field, kept in step with ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<Initialization>,

    /// The failure domains Cluster API may use, copied from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domains: Option<BTreeMap<String, FailureDomainSpec>>,

    /// Conditions in the Cluster API v1beta1 shape: Ready and LoadBalancerAvailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Conditions in the Cluster API v1beta2 (metav1.Condition) shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta2: Option<V1Beta2Status>,

    /// A terminal problem that needs a person, in a short machine-readable form (deprecated
    /// in Cluster API v1beta2; conditions carry the same information).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,

    /// A terminal problem that needs a person, explained for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,

    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn default_api_server_port() -> i32 {
    DEFAULT_API_SERVER_PORT
}

fn default_lb_repository() -> String {
    DEFAULT_LB_IMAGE_REPOSITORY.to_string()
}

fn default_lb_tag() -> String {
    DEFAULT_LB_IMAGE_TAG.to_string()
}
