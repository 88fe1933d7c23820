//! The Cluster API contract as pure functions: owners, pause, external management and
//! conditions. No I/O here.

pub mod conditions;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use capkind_api::capi::{GROUP, MANAGED_BY_ANNOTATION, PAUSED_ANNOTATION};

/// The owner reference of the given kind in Cluster API's core group, whatever its version
/// (core writes owner references with the version it runs, so matching by group and kind only).
pub fn owner<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.kind == kind && o.api_version.split('/').next() == Some(GROUP))
}

/// Whether another system manages this infrastructure object (annotation
/// `cluster.x-k8s.io/managed-by`; the label of the same name is honoured too).
pub fn is_externally_managed(meta: &ObjectMeta) -> bool {
    let has = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.as_ref()
            .is_some_and(|m| m.contains_key(MANAGED_BY_ANNOTATION))
    };
    has(&meta.annotations) || has(&meta.labels)
}

/// Why reconciliation is paused, if it is: the Cluster's `spec.paused`, the object's paused
/// annotation, or both. The message is the one Cluster API itself writes.
pub fn paused_message(cluster_paused: bool, meta: &ObjectMeta, kind: &str) -> Option<String> {
    let annotated = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(PAUSED_ANNOTATION));
    let mut reasons = Vec::new();
    if cluster_paused {
        reasons.push("Cluster spec.paused is set to true".to_string());
    }
    if annotated {
        reasons.push(format!("{kind} has the {PAUSED_ANNOTATION} annotation"));
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(owners: &[(&str, &str)], annotations: &[&str]) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                owners
                    .iter()
                    .map(|(api_version, kind)| OwnerReference {
                        api_version: api_version.to_string(),
                        kind: kind.to_string(),
                        name: "owner".into(),
                        uid: "u".into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            annotations: Some(
                annotations
                    .iter()
                    .map(|a| (a.to_string(), String::new()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn owner_matches_group_and_kind_in_any_version() {
        for version in ["cluster.x-k8s.io/v1beta1", "cluster.x-k8s.io/v1beta2"] {
            assert!(
                owner(&meta(&[(version, "Cluster")], &[]), "Cluster").is_some(),
                "{version}"
            );
        }
        assert!(owner(&meta(&[("example.com/v1", "Cluster")], &[]), "Cluster").is_none());
        assert!(
            owner(
                &meta(&[("cluster.x-k8s.io/v1beta1", "Machine")], &[]),
                "Cluster"
            )
            .is_none()
        );
        assert!(owner(&ObjectMeta::default(), "Cluster").is_none());
    }

    #[test]
    fn paused_message_names_every_reason() {
        let cases = [
            (false, vec![], None),
            (true, vec![], Some("Cluster spec.paused is set to true")),
            (
                false,
                vec![PAUSED_ANNOTATION],
                Some("KindCluster has the cluster.x-k8s.io/paused annotation"),
            ),
            (
                true,
                vec![PAUSED_ANNOTATION],
                Some(
                    "Cluster spec.paused is set to true, KindCluster has the cluster.x-k8s.io/paused annotation",
                ),
            ),
        ];
        for (cluster_paused, annotations, expected) in cases {
            let got = paused_message(cluster_paused, &meta(&[], &annotations), "KindCluster");
            assert_eq!(got.as_deref(), expected);
        }
    }

    #[test]
    fn managed_by_annotation_or_label() {
        assert!(is_externally_managed(&meta(&[], &[MANAGED_BY_ANNOTATION])));
        let labelled = ObjectMeta {
            labels: Some(BTreeMap::from([(
                MANAGED_BY_ANNOTATION.to_string(),
                "x".to_string(),
            )])),
            ..Default::default()
        };
        assert!(is_externally_managed(&labelled));
        assert!(!is_externally_managed(&ObjectMeta::default()));
    }
}
