//! KindMachine v1beta2: one Cluster API machine, realised as a kindest/node-style container.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::v1beta1::{DEFAULT_BOOTSTRAP_TIMEOUT, Mount};

use super::common::{Deprecated, Initialization, MachineAddress};
use crate::duration;

/// KindMachineSpec describes the node container of one machine.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "KindMachine",
    plural = "kindmachines",
    namespaced,
    status = "KindMachineStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    doc = "KindMachine is the infrastructure of one Cluster API machine: a Docker container running a kindest/node image.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']","description":"Cluster to which this KindMachine belongs"}"#,
    printcolumn = r#"{"name":"Machine","type":"string","jsonPath":".metadata.ownerReferences[?(@.kind==\"Machine\")].name","description":"Machine object which owns this KindMachine"}"#,
    printcolumn = r#"{"name":"ProviderID","type":"string","jsonPath":".spec.providerID","description":"Provider ID of the node"}"#,
    printcolumn = r#"{"name":"Failure domain","type":"string","jsonPath":".status.failureDomain","description":"Failure domain the node was placed in"}"#,
    printcolumn = r#"{"name":"Provisioned","type":"boolean","jsonPath":".status.initialization.provisioned","description":"The container runs and its bootstrap succeeded"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineSpec {
    /// The provider ID of the node, `kind://<cluster>/kind/<container>`. Set by the controller;
    /// it matches the Node's spec.providerID in the workload cluster. Empty until then.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "String::is_empty"
    )]
    #[schemars(length(min = 1, max = 512))]
    pub provider_id: String,

    /// The node image to run instead of kindest/node for the Machine's Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub custom_image: Option<String>,

    /// Images copied from the host's Docker into the node's containerd before the bootstrap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1)))]
    pub pre_load_images: Vec<String>,

    /// Host paths bind-mounted into the node container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_mounts: Vec<Mount>,

    /// How long the bootstrap (cloud-init or Ignition) may take before the machine is marked as
    /// failed, as a duration such as 5m, 90s or 1h30m. Defaults to 5m.
    #[serde(default = "default_bootstrap_timeout")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub bootstrap_timeout: String,
}

impl KindMachineSpec {
    /// The bootstrap timeout as a duration.
    pub fn bootstrap_timeout(&self) -> Result<std::time::Duration, duration::ParseDurationError> {
        duration::parse(&self.bootstrap_timeout)
    }
}

/// KindMachineStatus is what the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineStatus {
    /// Initialization state: provisioned once the container runs and its bootstrap succeeded;
    /// never set back to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<Initialization>,

    /// The node's addresses: Hostname, InternalIP and ExternalIP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<MachineAddress>,

    /// The failure domain the node was placed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub failure_domain: Option<String>,

    /// Conditions: Ready, ContainerProvisioned, BootstrapCompleted and Paused.
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

super::common::impl_provisioned!(KindMachine, "machine");

fn default_bootstrap_timeout() -> String {
    DEFAULT_BOOTSTRAP_TIMEOUT.to_string()
}
