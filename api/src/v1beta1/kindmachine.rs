//! KindMachine: one Cluster API machine, realised as a kindest/node-style Docker container.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Initialization, MachineAddress, V1Beta2Status};
use crate::duration;

/// How long the bootstrap may take when the spec says nothing.
pub const DEFAULT_BOOTSTRAP_TIMEOUT: &str = "5m";

/// KindMachineSpec describes the node container of one machine.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta1",
    kind = "KindMachine",
    plural = "kindmachines",
    namespaced,
    status = "KindMachineStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    doc = "KindMachine is the infrastructure of one Cluster API machine: a Docker container running a kindest/node image.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']","description":"Cluster to which this KindMachine belongs"}"#,
    printcolumn = r#"{"name":"Machine","type":"string","jsonPath":".metadata.ownerReferences[?(@.kind==\"Machine\")].name","description":"Machine object which owns this KindMachine"}"#,
    printcolumn = r#"{"name":"ProviderID","type":"string","jsonPath":".spec.providerID","description":"Provider ID of the node"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.ready","description":"The container runs and its bootstrap succeeded"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineSpec {
    /// The provider ID of the node, `kind://<cluster>/kind/<container>`. Set by the controller;
    /// it matches the Node's spec.providerID in the workload cluster.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 512))]
    pub provider_id: Option<String>,

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

/// A bind mount from the host into the node container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Absolute path inside the container.
    #[schemars(regex(pattern = r"^/"))]
    pub container_path: String,
    /// Absolute path on the Docker host.
    #[schemars(regex(pattern = r"^/"))]
    pub host_path: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// KindMachineStatus is what the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineStatus {
    /// True once the container runs and its bootstrap succeeded (contract v1beta1).
    #[serde(default)]
    pub ready: bool,

    /// Initialization state (contract v1beta2 field, kept in step with ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<Initialization>,

    /// The node's addresses: Hostname, InternalIP and ExternalIP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<MachineAddress>,

    /// The failure domain the node was placed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_domain: Option<String>,

    /// Conditions in the Cluster API v1beta1 shape: Ready, ContainerProvisioned,
    /// BootstrapExecSucceeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Conditions in the Cluster API v1beta2 (metav1.Condition) shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta2: Option<V1Beta2Status>,

    /// A terminal problem that needs a person, in a short machine-readable form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,

    /// A terminal problem that needs a person, explained for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,

    /// The generation of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn default_bootstrap_timeout() -> String {
    DEFAULT_BOOTSTRAP_TIMEOUT.to_string()
}
