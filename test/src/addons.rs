//! A stand-in for Cluster API's ClusterResourceSet CRD (addons.cluster.x-k8s.io, v1beta1 as
//! the e2e flavors write it), so that the test API server can dry-run those flavors. Unlike the
//! schema-less stand-ins, it has a schema for the fields the flavors use, written from Cluster
//! API's API types (`clusterSelector`, `resources[].name` and `.kind` with its enum, `strategy`
//! with its enum), so a misspelt field is pruned and a wrong value refused. It is not Cluster
//! API's CRD: the test environment has none of Cluster API's own CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

/// The ClusterResourceSet CRD stand-in.
pub fn cluster_resource_set_crd() -> CustomResourceDefinition {
    let string = serde_json::json!({"type": "string"});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterresourcesets.addons.cluster.x-k8s.io"},
        "spec": {
            "group": "addons.cluster.x-k8s.io",
            "names": {"kind": "ClusterResourceSet", "listKind": "ClusterResourceSetList",
                      "plural": "clusterresourcesets", "singular": "clusterresourceset"},
            "scope": "Namespaced",
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["clusterSelector"], "properties": {
                        "clusterSelector": {"type": "object", "properties": {
                            "matchLabels": {"type": "object", "additionalProperties": string},
                            "matchExpressions": {"type": "array", "items": {
                                "type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                        }},
                        "resources": {"type": "array", "items": {
                            "type": "object", "required": ["name", "kind"], "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "kind": {"type": "string", "enum": ["Secret", "ConfigMap"]},
                            }}},
                        "strategy": {"type": "string", "enum": ["ApplyOnce", "Reconcile"]},
                    }},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }}}}],
        },
    }))
    .expect("ClusterResourceSet CRD")
}

/// Installs (server-side apply) [`cluster_resource_set_crd`] and waits until it is established.
pub async fn install(client: &Client) -> Result<(), String> {
    crate::apply_crds(client, &[cluster_resource_set_crd()]).await
}
