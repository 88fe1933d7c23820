//! The labels on the containers the provider creates.
//!
//! kind's own labels (`io.x-k8s.kind.*`) make kind's tooling and CAPI's log collector see the
//! containers; the `capkind.x-k8s.io/*` labels tie each container to the object that owns it.
//! Ownership is decided by namespace and name, not UID: `clusterctl move` recreates objects with
//! new UIDs and must find its containers again. The UID is recorded for people.

use std::collections::BTreeMap;

/// kind's cluster label: the Cluster's name.
pub const CLUSTER: &str = "io.x-k8s.kind.cluster";
/// kind's role label: `control-plane`, `worker` or `external-load-balancer`.
pub const ROLE: &str = "io.x-k8s.kind.role";
/// The role of the load-balancer container.
pub const ROLE_LOAD_BALANCER: &str = "external-load-balancer";
/// The role of control-plane nodes.
pub const ROLE_CONTROL_PLANE: &str = "control-plane";
/// The failure domain of a node, as CAPD labels it.
pub const FAILURE_DOMAIN: &str = "io.x-k8s.cluster.failureDomain";
/// On networks the provider created itself (and so removes when its last cluster goes).
pub const NETWORK_CREATED_BY: &str = "capkind.x-k8s.io/created-by";
/// Its value.
pub const CREATED_BY_CAPKIND: &str = "cluster-api-provider-kind";
/// The kind of the owning object (KindCluster or KindMachine).
pub const OWNER_KIND: &str = "capkind.x-k8s.io/owner-kind";
/// The namespace of the owning object.
pub const OWNER_NAMESPACE: &str = "capkind.x-k8s.io/owner-namespace";
/// The name of the owning object.
pub const OWNER_NAME: &str = "capkind.x-k8s.io/owner-name";
/// The UID of the owning object when the container was created.
pub const OWNER_UID: &str = "capkind.x-k8s.io/owner-uid";

/// The object a container belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// KindCluster or KindMachine.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// UID of the object.
    pub uid: String,
}

impl Owner {
    /// The owner labels to put on a container.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_KIND.to_string(), self.kind.clone()),
            (OWNER_NAMESPACE.to_string(), self.namespace.clone()),
            (OWNER_NAME.to_string(), self.name.clone()),
            (OWNER_UID.to_string(), self.uid.clone()),
        ])
    }

    /// Whether a container with these labels belongs to this owner.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        let is = |key: &str, value: &str| labels.get(key).map(String::as_str) == Some(value);
        is(OWNER_KIND, &self.kind)
            && is(OWNER_NAMESPACE, &self.namespace)
            && is(OWNER_NAME, &self.name)
    }

    /// The owner recorded in a container's labels, if any.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Self> {
        let get = |key: &str| labels.get(key).cloned();
        Some(Self {
            kind: get(OWNER_KIND)?,
            namespace: get(OWNER_NAMESPACE)?,
            name: get(OWNER_NAME)?,
            uid: get(OWNER_UID).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_survives_a_new_uid_but_not_another_name() {
        let owner = Owner {
            kind: "KindCluster".into(),
            namespace: "ns".into(),
            name: "c".into(),
            uid: "1".into(),
        };
        let labels = owner.labels();
        assert!(owner.owns(&labels));
        assert!(
            Owner {
                uid: "2".into(),
                ..owner.clone()
            }
            .owns(&labels),
            "moved objects keep their containers"
        );
        assert!(
            !Owner {
                name: "d".into(),
                ..owner.clone()
            }
            .owns(&labels)
        );
        assert!(
            !Owner {
                namespace: "other".into(),
                ..owner.clone()
            }
            .owns(&labels)
        );
        assert!(
            !owner.owns(&BTreeMap::new()),
            "a container without labels is foreign"
        );
        assert_eq!(Owner::from_labels(&labels), Some(owner));
    }
}
