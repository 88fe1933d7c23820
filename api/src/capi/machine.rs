//! Machine (cluster.x-k8s.io, v1beta1 or v1beta2), as far as the provider reads it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use super::{CONTROL_PLANE_LABEL, Reference, Version, non_empty};

/// A Cluster API Machine in either version's shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// The apiVersion it was read with (or is to be written with).
    #[serde(default)]
    pub api_version: String,
    /// `Machine`.
    #[serde(default)]
    pub kind: String,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: MachineSpec,
    /// The status, written by core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MachineStatus>,
}

super::dynamic_resource!(Machine, "Machine", "machines");

/// The spec of a Machine: the fields both versions share. The strings that v1beta2 made plain
/// `omitempty` strings (v1beta1 pointers) read empty as unset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MachineSpec {
    /// The Cluster this Machine belongs to.
    #[serde(default)]
    pub cluster_name: String,
    /// Where the bootstrap data comes from.
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// The infrastructure provider's object (a KindMachine).
    #[serde(default)]
    pub infrastructure_ref: Reference,
    /// The Kubernetes version of the node, e.g. v1.31.0.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    /// The failure domain the Machine should be placed in.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub failure_domain: Option<String>,
    /// The provider ID, copied by core from the infrastructure object.
    #[serde(
        default,
        rename = "providerID",
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_id: Option<String>,
}

/// The bootstrap section of a Machine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    /// The bootstrap provider's object (a KubeadmConfig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_ref: Option<Reference>,
    /// The Secret holding the bootstrap data (keys `value` and `format`).
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_secret_name: Option<String>,
}

/// The status of a Machine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    /// The workload cluster Node of this Machine, once it registered: an ObjectReference in
    /// v1beta1, `{name}` in v1beta2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ref: Option<NodeReference>,
}

/// The Node of a Machine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeReference {
    /// The Node's name.
    #[serde(default)]
    pub name: String,
}

impl Machine {
    /// A Machine named `name` as read through `version`, with a default spec.
    pub fn new(name: &str, version: Version) -> Self {
        Self {
            api_version: version.api_version(),
            kind: Self::KIND.to_string(),
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..Self::default()
        }
    }

    /// Whether the Machine is part of the control plane.
    pub fn is_control_plane(&self) -> bool {
        self.labels().contains_key(CONTROL_PLANE_LABEL)
    }

    /// The name of its workload cluster Node, once core found it.
    pub fn node_name(&self) -> Option<&str> {
        let node = self.status.as_ref()?.node_ref.as_ref()?;
        Some(node.name.as_str()).filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A control-plane Machine as CAPI v1.10 core writes it (v1beta1).
    fn v1beta1() -> Value {
        json!({
            "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
            "metadata": {"name": "c-cp-0", "namespace": "ns", "uid": "u2",
                         "labels": {"cluster.x-k8s.io/cluster-name": "c",
                                    "cluster.x-k8s.io/control-plane": ""}},
            "spec": {
                "clusterName": "c", "version": "v1.31.0", "failureDomain": "fd1",
                "providerID": "kind://docker/c/c-cp-0",
                "bootstrap": {"configRef": {"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                                            "kind": "KubeadmConfig", "name": "c-cp-0", "namespace": "ns"},
                              "dataSecretName": "c-cp-0"},
                "infrastructureRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                                      "kind": "KindMachine", "name": "c-cp-0", "namespace": "ns"},
                "nodeDrainTimeout": "10s"
            },
            "status": {
                "phase": "Running", "bootstrapReady": true, "infrastructureReady": true,
                "nodeRef": {"apiVersion": "v1", "kind": "Node", "name": "c-cp-0", "uid": "n1"},
                "conditions": [{"type": "Ready", "status": "True",
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        })
    }

    /// A worker Machine as CAPI v1.11+ core writes it (v1beta2).
    fn v1beta2() -> Value {
        json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": "c-md-0", "namespace": "ns", "uid": "u3",
                         "labels": {"cluster.x-k8s.io/cluster-name": "c",
                                    "cluster.x-k8s.io/deployment-name": "c-md"}},
            "spec": {
                "clusterName": "c", "version": "v1.31.0", "providerID": "kind://docker/c/c-md-0",
                "bootstrap": {"configRef": {"apiGroup": "bootstrap.cluster.x-k8s.io",
                                            "kind": "KubeadmConfig", "name": "c-md-0"},
                              "dataSecretName": "c-md-0"},
                "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                      "kind": "KindMachine", "name": "c-md-0"},
                "deletion": {"nodeDrainTimeoutSeconds": 10}
            },
            "status": {
                "phase": "Running",
                "initialization": {"bootstrapDataSecretCreated": true, "infrastructureProvisioned": true},
                "nodeRef": {"name": "c-md-0"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                "observedGeneration": 1,
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        })
    }

    #[test]
    fn both_versions_answer_every_question_alike() {
        // (case, object, version, control plane, data secret, version, failure domain,
        //  provider ID, node)
        type Expected = (
            Version,
            bool,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let v1beta2_new = json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
            "metadata": {"name": "m"},
            "spec": {"clusterName": "c", "bootstrap": {}, "version": "", "failureDomain": "",
                     "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                           "kind": "KindMachine", "name": "m"}}
        });
        let cases: [(&str, Value, Expected); 3] = [
            (
                "v1beta1 control plane",
                v1beta1(),
                (
                    Version::V1Beta1,
                    true,
                    Some("c-cp-0"),
                    Some("v1.31.0"),
                    Some("fd1"),
                    Some("kind://docker/c/c-cp-0"),
                    Some("c-cp-0"),
                ),
            ),
            (
                "v1beta2 worker",
                v1beta2(),
                (
                    Version::V1Beta2,
                    false,
                    Some("c-md-0"),
                    Some("v1.31.0"),
                    None,
                    Some("kind://docker/c/c-md-0"),
                    Some("c-md-0"),
                ),
            ),
            (
                "v1beta2 new, empty strings unset",
                v1beta2_new,
                (Version::V1Beta2, false, None, None, None, None, None),
            ),
        ];
        for (case, json, expected) in cases {
            let m: Machine = serde_json::from_value(json).unwrap_or_else(|e| panic!("{case}: {e}"));
            let got = (
                m.version().expect("version"),
                m.is_control_plane(),
                m.spec.bootstrap.data_secret_name.as_deref(),
                m.spec.version.as_deref(),
                m.spec.failure_domain.as_deref(),
                m.spec.provider_id.as_deref(),
                m.node_name(),
            );
            assert_eq!(got, expected, "{case}");
            let r = &m.spec.infrastructure_ref;
            assert!(
                r.is("infrastructure.cluster.x-k8s.io", "KindMachine"),
                "{case}: {r:?}"
            );
            assert_eq!(r.name(), m.metadata.name.as_deref(), "{case}");
            assert_eq!(m.spec.cluster_name, "c", "{case}");
        }
    }

    #[test]
    fn a_machine_written_back_keeps_its_shape() {
        let m = Machine::new("m", Version::V1Beta2);
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["apiVersion"], "cluster.x-k8s.io/v1beta2");
        assert_eq!(json["kind"], "Machine");
        let m: Machine = serde_json::from_value(v1beta2()).expect("machine");
        let again: Machine =
            serde_json::from_value(serde_json::to_value(&m).expect("json")).expect("machine");
        assert_eq!(again, m);
    }
}
