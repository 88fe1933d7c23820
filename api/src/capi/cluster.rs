//! Cluster (cluster.x-k8s.io, v1beta1 or v1beta2), as far as the provider reads it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{Condition, ConditionsSection, Deprecated, Reference, Version, is_true};

/// The condition core sets once the control plane's first node is up.
pub const CONTROL_PLANE_INITIALIZED: &str = "ControlPlaneInitialized";

/// A Cluster API Cluster in either version's shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The apiVersion it was read with (or is to be written with).
    #[serde(default)]
    pub api_version: String,
    /// `Cluster`.
    #[serde(default)]
    pub kind: String,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: ClusterSpec,
    /// The status, written by core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ClusterStatus>,
}

super::dynamic_resource!(Cluster, "Cluster", "clusters");

/// The spec of a Cluster: the fields both versions share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Pauses reconciliation of the cluster and everything in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// The cluster's network settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_network: Option<ClusterNetwork>,
    /// The control-plane provider's object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_ref: Option<Reference>,
    /// The infrastructure provider's object (a KindCluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_ref: Option<Reference>,
}

/// Pod and service networks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// Pod network ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NetworkRanges>,
    /// Service network ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<NetworkRanges>,
}

/// A list of CIDR blocks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRanges {
    /// The CIDR blocks.
    #[serde(default)]
    pub cidr_blocks: Vec<String>,
}

/// The status of a Cluster: the union of both versions' fields the provider reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The infrastructure (our KindCluster) is ready (v1beta1).
    #[serde(default)]
    pub infrastructure_ready: bool,
    /// The control plane is ready (v1beta1).
    #[serde(default)]
    pub control_plane_ready: bool,
    /// How far the cluster got (v1beta2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<ClusterInitialization>,
    /// Cluster API's v1beta1 conditions in v1beta1, metav1 conditions in v1beta2; among them
    /// ControlPlaneInitialized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The v1beta2 conditions of a v1beta1 object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta2: Option<ConditionsSection>,
    /// The v1beta1 conditions of a v1beta2 object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<Deprecated>,
}

/// `status.initialization` of a v1beta2 Cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInitialization {
    /// The infrastructure (our KindCluster) reported provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure_provisioned: Option<bool>,
    /// The control plane's first node is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_initialized: Option<bool>,
}

impl Cluster {
    /// A Cluster named `name` as read through `version`, with a default spec.
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

    /// Whether `spec.paused` is set.
    pub fn is_paused(&self) -> bool {
        self.spec.paused.unwrap_or(false)
    }

    /// Whether the cluster's pod or service networks are IPv6 (IPv6-only or dual-stack), so the
    /// load balancer must listen on IPv6 too.
    pub fn is_ipv6(&self) -> bool {
        let network = self.spec.cluster_network.as_ref();
        [
            network.and_then(|n| n.pods.as_ref()),
            network.and_then(|n| n.services.as_ref()),
        ]
        .into_iter()
        .flatten()
        .flat_map(|r| r.cidr_blocks.iter())
        .any(|cidr| cidr.contains(':'))
    }

    /// Whether core marked the infrastructure ready: `status.infrastructureReady` (v1beta1) or
    /// `status.initialization.infrastructureProvisioned` (v1beta2).
    pub fn infrastructure_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.infrastructure_ready
                || s.initialization
                    .as_ref()
                    .and_then(|i| i.infrastructure_provisioned)
                    .unwrap_or(false)
        })
    }

    /// Whether core reports the control plane initialized, wherever either version puts it:
    /// `status.initialization.controlPlaneInitialized` (v1beta2), or a True
    /// ControlPlaneInitialized condition in `status.conditions` (both), `status.v1beta2`
    /// (v1beta1) or `status.deprecated.v1beta1` (v1beta2).
    pub fn control_plane_initialized(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        let initialized = status
            .initialization
            .as_ref()
            .and_then(|i| i.control_plane_initialized)
            .unwrap_or(false);
        let sections = [
            Some(&status.conditions),
            status.v1beta2.as_ref().map(|s| &s.conditions),
            status
                .deprecated
                .as_ref()
                .and_then(|d| d.v1beta1.as_ref())
                .map(|s| &s.conditions),
        ];
        initialized
            || sections
                .into_iter()
                .flatten()
                .any(|c| is_true(c, CONTROL_PLANE_INITIALIZED))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn cluster(pods: &[&str], services: &[&str]) -> Cluster {
        let ranges = |c: &[&str]| {
            Some(NetworkRanges {
                cidr_blocks: c.iter().map(|s| s.to_string()).collect(),
            })
        };
        let mut cluster = Cluster::new("c", Version::V1Beta2);
        cluster.spec.cluster_network = Some(ClusterNetwork {
            pods: ranges(pods),
            services: ranges(services),
        });
        cluster
    }

    #[test]
    fn ip_family_from_the_cluster_networks() {
        assert!(!Cluster::new("c", Version::V1Beta1).is_ipv6());
        assert!(!cluster(&["192.168.0.0/16"], &["10.128.0.0/12"]).is_ipv6());
        assert!(cluster(&["fd00:100:96::/48"], &["fd00:100:64::/108"]).is_ipv6());
        assert!(
            cluster(&["192.168.0.0/16", "fd00:100:96::/48"], &["10.128.0.0/12"]).is_ipv6(),
            "dual-stack"
        );
    }

    /// A v1beta1 Cluster as CAPI v1.10 core writes it once the control plane is up.
    fn v1beta1_provisioned() -> Value {
        json!({
            "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "generation": 2,
                         "finalizers": ["cluster.cluster.x-k8s.io"]},
            "spec": {
                "paused": false,
                "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]},
                                   "services": {"cidrBlocks": ["fd00:100:64::/108"]},
                                   "serviceDomain": "cluster.local"},
                "controlPlaneEndpoint": {"host": "172.18.0.3", "port": 6443},
                "controlPlaneRef": {"apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
                                    "kind": "KubeadmControlPlane", "name": "c-cp", "namespace": "ns"},
                "infrastructureRef": {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                                      "kind": "KindCluster", "name": "c", "namespace": "ns"}
            },
            "status": {
                "phase": "Provisioned", "observedGeneration": 2,
                "infrastructureReady": true, "controlPlaneReady": true,
                "failureDomains": {"fd1": {"controlPlane": true}},
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "ControlPlaneInitialized", "status": "True",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "InfrastructureReady", "status": "True",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "v1beta2": {"conditions": [
                    {"type": "Available", "status": "True", "reason": "Available", "message": "",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]}
            }
        })
    }

    /// A v1beta2 Cluster as CAPI v1.11+ core writes it once the control plane is up.
    fn v1beta2_provisioned() -> Value {
        json!({
            "apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "generation": 2},
            "spec": {
                "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]},
                                   "services": {"cidrBlocks": ["10.128.0.0/12"]}},
                "controlPlaneEndpoint": {"host": "172.18.0.3", "port": 6443},
                "controlPlaneRef": {"apiGroup": "controlplane.cluster.x-k8s.io",
                                    "kind": "KubeadmControlPlane", "name": "c-cp"},
                "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                      "kind": "KindCluster", "name": "c"}
            },
            "status": {
                "phase": "Provisioned", "observedGeneration": 2,
                "initialization": {"infrastructureProvisioned": true, "controlPlaneInitialized": true},
                "failureDomains": [{"name": "fd1", "controlPlane": true}],
                "controlPlane": {"desiredReplicas": 1, "replicas": 1},
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "Available", "message": "",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "InfrastructureReady", "status": "True", "reason": "Ready",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "ControlPlaneInitialized", "status": "True", "reason": "Initialized",
                     "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "deprecated": {"v1beta1": {"conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]}}
            }
        })
    }

    /// `base` with the field at `pointer` set to `value` (added when absent).
    fn with(mut base: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').expect(pointer);
        match base.pointer_mut(parent).expect(pointer) {
            Value::Array(items) => items[key.parse::<usize>().expect(pointer)] = value,
            parent => parent[key] = value,
        }
        base
    }

    #[test]
    fn both_versions_answer_every_question_alike() {
        let (b1, b2) = (v1beta1_provisioned(), v1beta2_provisioned());
        // (case, object, version, paused, ipv6, infrastructure ready, control plane initialized)
        let cases = [
            (
                "v1beta1 provisioned",
                b1.clone(),
                Version::V1Beta1,
                false,
                true,
                true,
                true,
            ),
            (
                "v1beta2 provisioned",
                b2.clone(),
                Version::V1Beta2,
                false,
                false,
                true,
                true,
            ),
            (
                "v1beta1 new",
                json!({"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
                       "metadata": {"name": "c"}, "spec": {"paused": true}}),
                Version::V1Beta1,
                true,
                false,
                false,
                false,
            ),
            (
                "v1beta2 new",
                json!({"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
                       "metadata": {"name": "c"}, "spec": {"paused": true}, "status": {}}),
                Version::V1Beta2,
                true,
                false,
                false,
                false,
            ),
            (
                "v1beta1 infrastructure only",
                with(b1.clone(), "/status/conditions/1/status", json!("False")),
                Version::V1Beta1,
                false,
                true,
                true,
                false,
            ),
            (
                "v1beta1 initialized in the v1beta2 section only",
                with(
                    with(b1.clone(), "/status/conditions", json!([])),
                    "/status/v1beta2/conditions/0/type",
                    json!("ControlPlaneInitialized"),
                ),
                Version::V1Beta1,
                false,
                true,
                true,
                true,
            ),
            (
                "v1beta2 infrastructure only",
                with(
                    with(
                        b2.clone(),
                        "/status/initialization",
                        json!({"infrastructureProvisioned": true}),
                    ),
                    "/status/conditions/2/status",
                    json!("False"),
                ),
                Version::V1Beta2,
                false,
                false,
                true,
                false,
            ),
            (
                "v1beta2 initialized by the condition only",
                with(
                    b2.clone(),
                    "/status/initialization",
                    json!({"infrastructureProvisioned": true}),
                ),
                Version::V1Beta2,
                false,
                false,
                true,
                true,
            ),
            (
                "v1beta2 initialized by the field only",
                with(b2.clone(), "/status/conditions", json!([])),
                Version::V1Beta2,
                false,
                false,
                true,
                true,
            ),
            (
                "v1beta2 provisioned = false",
                with(
                    b2.clone(),
                    "/status/initialization",
                    json!({"infrastructureProvisioned": false}),
                ),
                Version::V1Beta2,
                false,
                false,
                false,
                true,
            ),
            (
                "v1beta2 paused",
                with(b2, "/spec/paused", json!(true)),
                Version::V1Beta2,
                true,
                false,
                true,
                true,
            ),
        ];
        for (case, json, version, paused, ipv6, infrastructure, initialized) in cases {
            let c: Cluster = serde_json::from_value(json).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(c.version(), Some(version), "{case}: version");
            assert_eq!(c.is_paused(), paused, "{case}: paused");
            assert_eq!(c.is_ipv6(), ipv6, "{case}: ipv6");
            assert_eq!(
                c.infrastructure_ready(),
                infrastructure,
                "{case}: infrastructure"
            );
            assert_eq!(
                c.control_plane_initialized(),
                initialized,
                "{case}: initialized"
            );
        }
    }

    #[test]
    fn references_of_both_versions_name_the_kindcluster() {
        for json in [v1beta1_provisioned(), v1beta2_provisioned()] {
            let c: Cluster = serde_json::from_value(json).expect("cluster");
            let r = c.spec.infrastructure_ref.expect("infrastructureRef");
            assert!(
                r.is("infrastructure.cluster.x-k8s.io", "KindCluster"),
                "{r:?}"
            );
            assert_eq!(r.name(), Some("c"));
            let r = c.spec.control_plane_ref.expect("controlPlaneRef");
            assert!(
                r.is("controlplane.cluster.x-k8s.io", "KubeadmControlPlane"),
                "{r:?}"
            );
        }
    }
}
