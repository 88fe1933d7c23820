//! KindMachinePool: the infrastructure of one Cluster API MachinePool, a node container per
//! replica. Each instance is a KindMachine owned by the pool (Cluster API's MachinePool
//! Machines).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, Initialization, MachineAddress, V1Beta2Status};
use super::kindmachine::{DEFAULT_BOOTSTRAP_TIMEOUT, Mount};
use crate::duration;

/// KindMachinePoolSpec describes the node containers of a MachinePool's replicas.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta1",
    kind = "KindMachinePool",
    plural = "kindmachinepools",
    namespaced,
    status = "KindMachinePoolStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    doc = "KindMachinePool is the infrastructure of one Cluster API MachinePool: a node container per replica, each a KindMachine owned by the pool.",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".metadata.labels['cluster\\.x-k8s\\.io/cluster-name']","description":"Cluster to which this KindMachinePool belongs"}"#,
    printcolumn = r#"{"name":"MachinePool","type":"string","jsonPath":".metadata.ownerReferences[?(@.kind==\"MachinePool\")].name","description":"MachinePool which owns this KindMachinePool"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.replicas","description":"Instances of the pool"}"#,
    printcolumn = r#"{"name":"Ready","type":"boolean","jsonPath":".status.ready","description":"Every wanted instance runs and is bootstrapped"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolSpec {
    /// An identifier of the pool, `kind://<cluster>/pool/<name>`. Set by the controller.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1, max = 512))]
    pub provider_id: Option<String>,

    /// The provider IDs of the pool's instances that have one, sorted. Set by the controller.
    #[serde(
        default,
        rename = "providerIDList",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(length(max = 10000), inner(length(min = 1, max = 512)))]
    pub provider_id_list: Vec<String>,

    /// The node container of every instance.
    #[serde(default)]
    pub template: KindMachinePoolMachineTemplate,
}

/// The KindMachine fields that apply to every instance of a pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolMachineTemplate {
    /// The node image to run instead of kindest/node for the MachinePool's Kubernetes version.
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

    /// How long the bootstrap may take before the instance is marked as failed, as a duration
    /// such as 5m, 90s or 1h30m. Defaults to 5m.
    #[serde(default = "default_bootstrap_timeout")]
    #[schemars(regex(pattern = duration::PATTERN))]
    pub bootstrap_timeout: String,
}

impl Default for KindMachinePoolMachineTemplate {
    fn default() -> Self {
        Self {
            custom_image: None,
            pre_load_images: Vec::new(),
            extra_mounts: Vec::new(),
            bootstrap_timeout: default_bootstrap_timeout(),
        }
    }
}

/// KindMachinePoolStatus is what the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolStatus {
    /// True while every wanted instance is ready (contract v1beta1).
    #[serde(default)]
    pub ready: bool,

    /// Initialization state (contract v1beta2 field, kept in step with ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<Initialization>,

    /// How many instances the pool has, ready or not.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// The kind of the pool's instances (KindMachine): Cluster API makes a Machine for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_machine_kind: Option<String>,

    /// The pool's instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<KindMachinePoolInstance>,

    /// Conditions in the Cluster API v1beta1 shape: Ready and ReplicasReady.
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

/// One instance of a pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolInstance {
    /// The instance's KindMachine, and the name of its Machine.
    #[schemars(length(min = 1, max = 253))]
    pub instance_name: String,

    /// The instance's provider ID, once it has one.
    #[serde(
        default,
        rename = "providerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,

    /// The Kubernetes version the instance was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// True once the instance runs and its bootstrap succeeded.
    #[serde(default)]
    pub ready: bool,

    /// The instance's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<MachineAddress>,
}

fn default_bootstrap_timeout() -> String {
    DEFAULT_BOOTSTRAP_TIMEOUT.to_string()
}
