//! KindClusterTemplate v1beta2: the KindCluster a ClusterClass stamps out for each cluster.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ObjectMeta;
use super::kindcluster::KindClusterSpec;

/// KindClusterTemplateSpec holds the KindCluster to stamp out.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta2",
    kind = "KindClusterTemplate",
    plural = "kindclustertemplates",
    namespaced,
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    label("cluster.x-k8s.io/v1beta2", "v1beta2"),
    doc = "KindClusterTemplate is the template from which a ClusterClass creates KindClusters.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterTemplateSpec {
    /// The KindCluster created from this template.
    pub template: KindClusterTemplateResource,
}

/// The metadata and spec of the KindClusters created from the template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterTemplateResource {
    /// Labels and annotations given to the KindCluster.
    #[serde(default, skip_serializing_if = "ObjectMeta::is_empty")]
    pub metadata: ObjectMeta,
    /// The KindCluster's spec. Immutable: a ClusterClass rebases onto a new template instead.
    pub spec: KindClusterSpec,
}
