//! KindMachineTemplate v1beta2: the KindMachine that MachineSets and control planes clone for each
//! new Machine.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ObjectMeta;
use super::kindmachine::KindMachineSpec;

/// KindMachineTemplateSpec holds the template of the KindMachines cloned from it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "KindMachineTemplate",
    plural = "kindmachinetemplates",
    namespaced,
    status = "KindMachineTemplateStatus",
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    doc = "KindMachineTemplate is the template from which Cluster API clones KindMachines.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineTemplateSpec {
    /// The KindMachine to clone.
    pub template: KindMachineTemplateResource,
}

/// The KindMachine cloned from a KindMachineTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineTemplateResource {
    /// Labels and annotations of the cloned KindMachine.
    #[serde(default, skip_serializing_if = "ObjectMeta::is_empty")]
    pub metadata: ObjectMeta,
    /// Spec of the cloned KindMachine.
    pub spec: KindMachineSpec,
}

/// KindMachineTemplateStatus tells autoscalers what a node of this template offers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindMachineTemplateStatus {
    /// Resources a node of this template has (cpu, memory), taken from the Docker host; used
    /// by the cluster autoscaler to scale from zero.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, Quantity>,
    /// The architecture and operating system of a node of this template, taken from the Docker
    /// host; used by the cluster autoscaler to scale from zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeInfo>,
}

/// NodeInfo describes the node a KindMachine of this template becomes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    /// The CPU architecture of the node, as Kubernetes names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// The operating system of the node, as Kubernetes names it (linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_system: Option<String>,
}

/// A CPU architecture, as Kubernetes and Cluster API name it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
    /// IBM Z.
    S390x,
    /// 64-bit POWER, little-endian.
    Ppc64le,
}
