//! The kinds the webhooks serve, at v1beta2 (the storage version, which the API server
//! converts every request to before it calls a webhook registered with `matchPolicy:
//! Equivalent`), and their typed objects.

use capkind_api::v1beta2::{
    KindCluster, KindClusterTemplate, KindMachine, KindMachinePool, KindMachinePoolTemplate,
    KindMachineTemplate,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A kind the webhooks serve: the kinds the conversion handles, all of them.
pub use capkind_api::conversion::Kind;

/// The version the defaulting and validating webhooks are registered for.
pub const VERSION: &str = "v1beta2";

/// The defaulting route of `kind`, as kubebuilder names it:
/// `/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindcluster`.
pub fn mutate_path(kind: Kind) -> String {
    format!("/mutate-{}", path_suffix(kind))
}

/// The validating route: `/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindcluster`.
pub fn validate_path(kind: Kind) -> String {
    format!("/validate-{}", path_suffix(kind))
}

fn path_suffix(kind: Kind) -> String {
    format!(
        "{}-{VERSION}-{}",
        capkind_api::GROUP.replace('.', "-"),
        kind.as_str().to_lowercase()
    )
}

/// One object of a served kind.
#[derive(Clone, Debug)]
pub enum Object {
    /// A KindCluster.
    KindCluster(Box<KindCluster>),
    /// A KindClusterTemplate.
    KindClusterTemplate(Box<KindClusterTemplate>),
    /// A KindMachine.
    KindMachine(Box<KindMachine>),
    /// A KindMachineTemplate.
    KindMachineTemplate(Box<KindMachineTemplate>),
    /// A KindMachinePool.
    KindMachinePool(Box<KindMachinePool>),
    /// A KindMachinePoolTemplate.
    KindMachinePoolTemplate(Box<KindMachinePoolTemplate>),
}

impl Object {
    /// Reads an object of `kind` from its JSON.
    pub fn from_value(kind: Kind, value: serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(match kind {
            Kind::KindCluster => Object::KindCluster(serde_json::from_value(value)?),
            Kind::KindClusterTemplate => {
                Object::KindClusterTemplate(serde_json::from_value(value)?)
            }
            Kind::KindMachine => Object::KindMachine(serde_json::from_value(value)?),
            Kind::KindMachineTemplate => {
                Object::KindMachineTemplate(serde_json::from_value(value)?)
            }
            Kind::KindMachinePool => Object::KindMachinePool(serde_json::from_value(value)?),
            Kind::KindMachinePoolTemplate => {
                Object::KindMachinePoolTemplate(serde_json::from_value(value)?)
            }
        })
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::KindCluster(_) => Kind::KindCluster,
            Object::KindClusterTemplate(_) => Kind::KindClusterTemplate,
            Object::KindMachine(_) => Kind::KindMachine,
            Object::KindMachineTemplate(_) => Kind::KindMachineTemplate,
            Object::KindMachinePool(_) => Kind::KindMachinePool,
            Object::KindMachinePoolTemplate(_) => Kind::KindMachinePoolTemplate,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::KindCluster(o) => &o.metadata,
            Object::KindClusterTemplate(o) => &o.metadata,
            Object::KindMachine(o) => &o.metadata,
            Object::KindMachineTemplate(o) => &o.metadata,
            Object::KindMachinePool(o) => &o.metadata,
            Object::KindMachinePoolTemplate(o) => &o.metadata,
        }
    }

    /// The object's spec as JSON.
    pub fn spec_value(&self) -> serde_json::Value {
        let spec = match self {
            Object::KindCluster(o) => serde_json::to_value(&o.spec),
            Object::KindClusterTemplate(o) => serde_json::to_value(&o.spec),
            Object::KindMachine(o) => serde_json::to_value(&o.spec),
            Object::KindMachineTemplate(o) => serde_json::to_value(&o.spec),
            Object::KindMachinePool(o) => serde_json::to_value(&o.spec),
            Object::KindMachinePoolTemplate(o) => serde_json::to_value(&o.spec),
        };
        // Plain structs of strings, numbers and maps with string keys always serialize.
        spec.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_as_kubebuilder_names_them() {
        let paths: Vec<_> = Kind::ALL
            .iter()
            .flat_map(|&k| [mutate_path(k), validate_path(k)])
            .collect();
        assert_eq!(
            paths,
            [
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindcluster",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindcluster",
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindclustertemplate",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindclustertemplate",
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachine",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachine",
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinetemplate",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinetemplate",
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinepool",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinepool",
                "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinepooltemplate",
                "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachinepooltemplate",
            ]
        );
    }
}
