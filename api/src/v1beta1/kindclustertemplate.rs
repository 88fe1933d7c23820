//! KindClusterTemplate: the KindCluster a ClusterClass stamps out for each of its clusters.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ObjectMeta;
use super::kindcluster::KindClusterSpec;

/// KindClusterTemplateSpec holds the template of the KindClusters created from it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "infrastructure.cluster.x-k8s.io",
    version = "v1beta1",
    kind = "KindClusterTemplate",
    plural = "kindclustertemplates",
    namespaced,
    category = "cluster-api",
    label("cluster.x-k8s.io/v1beta1", "v1beta1"),
    doc = "KindClusterTemplate is the template from which a ClusterClass creates KindClusters.",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterTemplateSpec {
    /// The KindCluster to create.
    pub template: KindClusterTemplateResource,
}

/// The KindCluster created from a KindClusterTemplate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindClusterTemplateResource {
    /// Labels and annotations of the created KindCluster.
    #[serde(default, skip_serializing_if = "ObjectMeta::is_empty")]
    pub metadata: ObjectMeta,
    /// Spec of the created KindCluster.
    pub spec: KindClusterSpec,
}
