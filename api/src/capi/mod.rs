//! The parts of Cluster API's own objects (group `cluster.x-k8s.io`) that the provider reads, in
//! either version Cluster API serves them: v1beta1 (the only one up to CAPI v1.10, deprecated
//! since v1.11) and v1beta2 (stored since v1.11). One type per kind reads both shapes: its fields
//! are the union of the two versions', all defaulted, and its methods look in both places.
//!
//! Which version a manager reads through is known only at run time (the newest the management
//! cluster serves), so [`Cluster`] and [`Machine`] are `kube::Resource`s whose dynamic type is
//! an [`ApiResource`]: `Api::namespaced_with(client, ns, &Cluster::api_resource(version))`.
//!
//! Read-only shims: unknown fields are ignored and nothing here is written back except by tests
//! that play Cluster API core.

mod cluster;
mod common;
mod machine;
mod machinepool;

pub use cluster::*;
pub use common::*;
pub use machine::*;
pub use machinepool::*;

use kube::api::ApiResource;

/// The Cluster API core group.
pub const GROUP: &str = "cluster.x-k8s.io";

/// Label with the name of the Cluster an object belongs to.
pub const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// Label present on control-plane Machines.
pub const CONTROL_PLANE_LABEL: &str = "cluster.x-k8s.io/control-plane";
/// Annotation that pauses reconciliation of one object.
pub const PAUSED_ANNOTATION: &str = "cluster.x-k8s.io/paused";
/// Annotation that hands an infrastructure object to an external system.
pub const MANAGED_BY_ANNOTATION: &str = "cluster.x-k8s.io/managed-by";
/// Label that selects which manager instance watches an object.
pub const WATCH_FILTER_LABEL: &str = "cluster.x-k8s.io/watch-filter";

/// A version of the Cluster API core group the provider can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// Served by every Cluster API release up to v1.15 (deprecated since v1.11).
    #[default]
    V1Beta1,
    /// Served (and stored) since Cluster API v1.11.
    V1Beta2,
}

impl Version {
    /// Every version, newest first.
    pub const ALL: [Version; 2] = [Version::V1Beta2, Version::V1Beta1];

    /// The version's name, e.g. `v1beta2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1Beta1 => "v1beta1",
            Version::V1Beta2 => "v1beta2",
        }
    }

    /// The version named `name`, when the provider can read it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// The version of an apiVersion in the core group (`cluster.x-k8s.io/v1beta2`).
    pub fn from_api_version(api_version: &str) -> Option<Self> {
        let (group, version) = api_version.split_once('/')?;
        (group == GROUP).then(|| Self::from_name(version)).flatten()
    }

    /// The apiVersion, e.g. `cluster.x-k8s.io/v1beta2`.
    pub fn api_version(self) -> String {
        format!("{GROUP}/{}", self.as_str())
    }

    /// The newest version the provider can read that serves every one of `kinds`, given what
    /// the API server serves: (version, its kinds) pairs, as API discovery lists them.
    pub fn newest_serving<V, K>(served: &[(V, Vec<K>)], kinds: &[&str]) -> Option<Self>
    where
        V: AsRef<str>,
        K: AsRef<str>,
    {
        Self::ALL.into_iter().find(|version| {
            served.iter().any(|(name, have)| {
                name.as_ref() == version.as_str()
                    && kinds.iter().all(|k| have.iter().any(|h| h.as_ref() == *k))
            })
        })
    }

    fn resource(self, kind: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: GROUP.to_string(),
            version: self.as_str().to_string(),
            api_version: self.api_version(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kube::Resource` for a core kind read through an [`ApiResource`] chosen at run time.
macro_rules! dynamic_resource {
    ($ty:ty, $kind:literal, $plural:literal) => {
        impl $ty {
            /// The kind's name.
            pub const KIND: &'static str = $kind;

            /// What the API calls the kind at `version`: pass it to `Api::namespaced_with`,
            /// `Controller::watches_with`, `Writer::new` or `ObjectRef::new_with`.
            pub fn api_resource(version: $crate::capi::Version) -> kube::api::ApiResource {
                version.resource($kind, $plural)
            }

            /// The version the object was read with (its apiVersion), when the provider
            /// knows it.
            pub fn version(&self) -> Option<$crate::capi::Version> {
                $crate::capi::Version::from_api_version(&self.api_version)
            }
        }

        impl kube::Resource for $ty {
            type DynamicType = kube::api::ApiResource;
            type Scope = kube::core::DynamicResourceScope;

            fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                dt.kind.as_str().into()
            }

            fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                dt.group.as_str().into()
            }

            fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                dt.version.as_str().into()
            }

            fn api_version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                dt.api_version.as_str().into()
            }

            fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
                dt.plural.as_str().into()
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
use dynamic_resource;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_serving_both_kinds_is_chosen() {
        const BOTH: &[&str] = &["Cluster", "Machine"];
        let both = || vec!["Cluster", "MachineSet", "Machine"];
        type Served = Vec<(&'static str, Vec<&'static str>)>;
        let cases: [(&str, Served, Option<Version>); 6] = [
            (
                "CAPI v1.10",
                vec![("v1beta1", both())],
                Some(Version::V1Beta1),
            ),
            (
                "CAPI v1.11 to v1.15",
                vec![("v1beta2", both()), ("v1beta1", both())],
                Some(Version::V1Beta2),
            ),
            (
                "v1beta2 only",
                vec![("v1beta2", both())],
                Some(Version::V1Beta2),
            ),
            (
                "a version the provider cannot read",
                vec![("v1", both()), ("v1beta1", both())],
                Some(Version::V1Beta1),
            ),
            (
                "the group without Machine",
                vec![("v1beta2", vec!["Cluster", "ClusterClass"])],
                None,
            ),
            ("nothing served", vec![], None),
        ];
        for (case, served, expected) in cases {
            assert_eq!(Version::newest_serving(&served, BOTH), expected, "{case}");
        }
    }

    #[test]
    fn versions_from_api_versions() {
        let cases = [
            ("cluster.x-k8s.io/v1beta1", Some(Version::V1Beta1)),
            ("cluster.x-k8s.io/v1beta2", Some(Version::V1Beta2)),
            ("cluster.x-k8s.io/v1alpha4", None),
            ("infrastructure.cluster.x-k8s.io/v1beta2", None),
            ("v1", None),
            ("", None),
        ];
        for (api_version, expected) in cases {
            assert_eq!(
                Version::from_api_version(api_version),
                expected,
                "{api_version}"
            );
        }
        for v in Version::ALL {
            assert_eq!(Version::from_api_version(&v.api_version()), Some(v));
        }
    }

    #[test]
    fn api_resources_name_the_version_chosen() {
        let ar = Cluster::api_resource(Version::V1Beta2);
        assert_eq!(
            (
                ar.api_version.as_str(),
                ar.kind.as_str(),
                ar.plural.as_str()
            ),
            ("cluster.x-k8s.io/v1beta2", "Cluster", "clusters")
        );
        let ar = Machine::api_resource(Version::V1Beta1);
        assert_eq!(
            (
                ar.api_version.as_str(),
                ar.kind.as_str(),
                ar.plural.as_str()
            ),
            ("cluster.x-k8s.io/v1beta1", "Machine", "machines")
        );
        assert_eq!(
            <Machine as kube::Resource>::url_path(&ar, Some("ns")),
            "/apis/cluster.x-k8s.io/v1beta1/namespaces/ns/machines"
        );
    }
}
