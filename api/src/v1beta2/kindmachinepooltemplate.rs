//! KindMachinePoolTemplate v1beta2: the KindMachinePool a ClusterClass clones for each
//! MachinePool of a topology.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ObjectMeta;
use super::kindmachinepool::KindMachinePoolSpec;

/// KindMachinePoolTemplateSpec holds the template of the KindMachinePools cloned from it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "KindMachinePoolTemplate",
    plural = "kindmachinepooltemplates",
    namespaced,
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    doc = "KindMachinePoolTemplate is the template from which a ClusterClass clones KindMachinePools.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolTemplateSpec {
    /// The KindMachinePool to clone.
    pub template: KindMachinePoolTemplateResource,
}

/// The KindMachinePool cloned from a KindMachinePoolTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachinePoolTemplateResource {
    /// Labels and annotations of the cloned KindMachinePool.
    #[serde(default, skip_serializing_if = "ObjectMeta::is_empty")]
    pub metadata: ObjectMeta,
    /// Spec of the cloned KindMachinePool.
    pub spec: KindMachinePoolSpec,
}
