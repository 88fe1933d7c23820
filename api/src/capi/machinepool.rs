//! MachinePool (cluster.x-k8s.io, v1beta1 or v1beta2), as far as the provider reads it. Both
//! versions spell these fields alike.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::MachineSpec;

/// Label with the name of the MachinePool a Machine or an infrastructure instance belongs to.
pub const MACHINE_POOL_NAME_LABEL: &str = "cluster.x-k8s.io/pool-name";
/// Annotation on a Machine that asks for it to be removed first when its group scales down.
pub const DELETE_MACHINE_ANNOTATION: &str = "cluster.x-k8s.io/delete-machine";

/// A Cluster API MachinePool in either version's shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MachinePool {
    /// The apiVersion it was read with (or is to be written with).
    #[serde(default)]
    pub api_version: String,
    /// `MachinePool`.
    #[serde(default)]
    pub kind: String,
    /// The object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The spec.
    #[serde(default)]
    pub spec: MachinePoolSpec,
}

super::dynamic_resource!(MachinePool, "MachinePool", "machinepools");

/// The spec of a MachinePool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MachinePoolSpec {
    /// The Cluster this pool belongs to.
    #[serde(default)]
    pub cluster_name: String,
    /// How many instances are wanted; core defaults it to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// What every instance is made from: the bootstrap data, the infrastructure (a
    /// KindMachinePool) and the Kubernetes version.
    #[serde(default)]
    pub template: MachinePoolTemplate,
    /// The failure domains to spread the instances over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_domains: Vec<String>,
    /// The provider IDs of the instances, copied by core from the KindMachinePool.
    #[serde(
        default,
        rename = "providerIDList",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub provider_id_list: Vec<String>,
}

/// The template of a MachinePool's instances.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MachinePoolTemplate {
    /// Labels and annotations core gives the pool's Machines.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The Machine spec of every instance.
    #[serde(default)]
    pub spec: MachineSpec,
}

impl MachinePool {
    /// The wanted number of instances (1 when unset, as core defaults it).
    pub fn replicas(&self) -> i32 {
        self.spec.replicas.unwrap_or(1).max(0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::capi::Version;

    #[test]
    fn both_versions_read_alike() {
        for (version, bootstrap_ref, infra_ref) in [
            (
                "v1beta1",
                json!({"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1", "kind": "KubeadmConfig", "name": "mp-0"}),
                json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1", "kind": "KindMachinePool", "name": "mp-0"}),
            ),
            (
                "v1beta2",
                json!({"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfig", "name": "mp-0"}),
                json!({"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "KindMachinePool", "name": "mp-0"}),
            ),
        ] {
            let mp: MachinePool = serde_json::from_value(json!({
                "apiVersion": format!("cluster.x-k8s.io/{version}"), "kind": "MachinePool",
                "metadata": {"name": "mp-0", "namespace": "ns"},
                "spec": {"clusterName": "c", "replicas": 3, "failureDomains": ["fd1", "fd2"],
                         "template": {"spec": {"clusterName": "c", "version": "v1.31.0",
                                               "bootstrap": {"configRef": bootstrap_ref, "dataSecretName": "mp-0-data"},
                                               "infrastructureRef": infra_ref}}}
            }))
            .unwrap_or_else(|e| panic!("{version}: {e}"));
            assert_eq!(mp.version(), Version::from_name(version));
            assert_eq!(mp.replicas(), 3, "{version}");
            assert_eq!(mp.spec.failure_domains, ["fd1", "fd2"], "{version}");
            let t = &mp.spec.template.spec;
            assert_eq!(t.bootstrap.data_secret_name.as_deref(), Some("mp-0-data"));
            assert_eq!(t.version.as_deref(), Some("v1.31.0"));
            assert!(
                t.infrastructure_ref
                    .is("infrastructure.cluster.x-k8s.io", "KindMachinePool")
            );
        }
        let unset: MachinePool = serde_json::from_value(json!({"spec": {}})).expect("pool");
        assert_eq!(unset.replicas(), 1, "core's default");
    }
}
