//! What Cluster and Machine share: references to other objects and conditions, each in a type
//! that reads both versions' shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Deserializer, Serialize};

/// A reference from a Cluster or Machine to a provider's object (`infrastructureRef`,
/// `controlPlaneRef`, `bootstrap.configRef`). v1beta1 writes an ObjectReference (`apiVersion`,
/// `kind`, `name`, `namespace`); v1beta2 a ContractVersionedObjectReference (`apiGroup`,
/// `kind`, `name`: no version, no namespace: always the referrer's).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// The group (v1beta2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// The group and version (v1beta1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The kind.
    #[serde(default)]
    pub kind: String,
    /// The name, in the referrer's namespace.
    #[serde(default)]
    pub name: String,
    /// The namespace (v1beta1; always the referrer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Reference {
    /// The referenced object's group, from `apiGroup` or else `apiVersion` (`""` for the core
    /// group's `v1`).
    pub fn group(&self) -> Option<&str> {
        if let Some(group) = &self.api_group {
            return Some(group);
        }
        let api_version = self.api_version.as_deref()?;
        Some(api_version.split_once('/').map_or("", |(group, _)| group))
    }

    /// Whether it names an object of `kind` in `group`, whatever the version.
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.kind == kind && self.group() == Some(group)
    }

    /// The name, unless empty.
    pub fn name(&self) -> Option<&str> {
        Some(self.name.as_str()).filter(|n| !n.is_empty())
    }
}

/// A condition in either shape: Cluster API's v1beta1 Condition (with `severity`) or a
/// metav1.Condition (with `observedGeneration`), as v1beta2 objects and the `v1beta2` and
/// `deprecated.v1beta1` sections hold them. Only what the provider compares is required.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `ControlPlaneInitialized`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Error`, `Warning` or `Info` (v1beta1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The generation the condition was computed for (metav1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Whether `conditions` hold a condition of `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Conditions kept in a section of their own: `status.v1beta2` in v1beta1 objects (the new
/// conditions), `status.deprecated.v1beta1` in v1beta2 ones (the old).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionsSection {
    /// The conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.deprecated` of a v1beta2 object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Deprecated {
    /// What the object held in v1beta1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta1: Option<ConditionsSection>,
}

/// A string field that is a pointer in v1beta1 and a plain `omitempty` string in v1beta2: empty
/// reads as unset in both.
pub(crate) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_name_their_group_in_either_shape() {
        let cases = [
            (
                json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindCluster",
                       "name": "c", "namespace": "ns"}),
                Some("infrastructure.cluster.x-k8s.io"),
            ),
            (
                json!({"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "KindCluster", "name": "c"}),
                Some("infrastructure.cluster.x-k8s.io"),
            ),
            (
                json!({"apiVersion": "v1", "kind": "Secret", "name": "s"}),
                Some(""),
            ),
            (json!({"kind": "KindCluster", "name": "c"}), None),
        ];
        for (json, group) in cases {
            let r: Reference = serde_json::from_value(json.clone()).expect("reference");
            assert_eq!(r.group(), group, "{json}");
            assert_eq!(
                r.is("infrastructure.cluster.x-k8s.io", "KindCluster"),
                group == Some("infrastructure.cluster.x-k8s.io"),
                "{json}"
            );
        }
        assert_eq!(Reference::default().name(), None);
    }

    #[test]
    fn conditions_of_either_shape_parse() {
        let v1beta1 = json!({"type": "Ready", "status": "False", "severity": "Warning",
                             "reason": "Waiting", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let metav1 = json!({"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                            "observedGeneration": 3, "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let bare = json!({"type": "Ready", "status": "True"});
        let parsed: Vec<Condition> =
            serde_json::from_value(json!([v1beta1, metav1, bare])).expect("conditions");
        assert_eq!(parsed[0].severity.as_deref(), Some("Warning"));
        assert_eq!(parsed[1].observed_generation, Some(3));
        assert!(!is_true(&parsed[..1], "Ready"));
        assert!(is_true(&parsed[1..2], "Ready") && is_true(&parsed[2..], "Ready"));
        assert!(!is_true(&parsed, "Paused"));
    }
}
