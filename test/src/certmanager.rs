//! Stand-ins for cert-manager's Issuer and Certificate CRDs (cert-manager.io/v1), so that the
//! test API server accepts the provider's components in a server-side dry run. No test runs
//! cert-manager, so they are schema-less (`x-kubernetes-preserve-unknown-fields`): the API
//! server checks that the kinds exist and the objects are well formed, not cert-manager's
//! validation.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

/// The Issuer and Certificate CRDs, namespaced, served and stored as v1.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [("Issuer", "issuers"), ("Certificate", "certificates")]
        .into_iter()
        .map(|(kind, plural)| {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.cert-manager.io")},
                "spec": {
                    "group": "cert-manager.io",
                    "names": {
                        "kind": kind,
                        "listKind": format!("{kind}List"),
                        "plural": plural,
                        "singular": kind.to_lowercase(),
                    },
                    "scope": "Namespaced",
                    "versions": [{
                        "name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": true
                        }},
                    }],
                },
            }))
            .expect("cert-manager CRD")
        })
        .collect()
}

/// Installs (server-side apply) the stand-ins of [`crds`] and waits until they are established.
pub async fn install(client: &Client) -> Result<(), String> {
    crate::apply_crds(client, &crds()).await
}
