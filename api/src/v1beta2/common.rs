//! Types of the v1beta2 kinds that v1beta1 lacks; the rest is shared with v1beta1.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::v1beta1::{
    Condition as V1Beta1Condition, ConditionSeverity, ConditionStatus, Initialization,
    LocalObjectReference, MachineAddress, MachineAddressType, ObjectMeta,
};

/// One failure domain (Cluster API v1beta2 `FailureDomain`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureDomain {
    /// The name of the failure domain; unique in the list.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,

    /// Whether control-plane machines may be placed in this failure domain. Defaults to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<bool>,

    /// Free-form attributes of the failure domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
}

/// `provisioned()` of a kind whose status has the contract's `initialization`: whether
/// `status.initialization.provisioned` is true.
macro_rules! impl_provisioned {
    ($kind:ident, $what:literal) => {
        impl $kind {
            #[doc = concat!("Whether the ", $what, " was provisioned (contract `status.initialization.provisioned`).")]
            pub fn provisioned(&self) -> bool {
                self.status
                    .as_ref()
                    .and_then(|s| s.initialization.as_ref())
                    .and_then(|i| i.provisioned)
                    .unwrap_or(false)
            }
        }
    };
}
pub(crate) use impl_provisioned;

/// Status fields kept for readers of the v1beta1 contract.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deprecated {
    /// The v1beta1 conditions and failure fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1beta1: Option<V1Beta1Deprecated>,
}

/// What the v1beta1 contract had in status and v1beta2 dropped.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct V1Beta1Deprecated {
    /// Conditions in the Cluster API v1beta1 shape (with severity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<V1Beta1Condition>,

    /// A problem that needs a person, in a short machine-readable form. Not terminal in v1beta2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,

    /// A problem that needs a person, explained for people. Not terminal in v1beta2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

impl Deprecated {
    /// The v1beta1 conditions, empty when there are none.
    pub fn conditions(&self) -> &[V1Beta1Condition] {
        self.v1beta1.as_ref().map_or(&[], |d| &d.conditions)
    }
}

/// The schema of a metav1 Condition list as controller-gen writes it for Cluster API types:
/// the enum of statuses and the length and pattern limits, which k8s-openapi's schema lacks.
pub(crate) fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Conditions in metav1.Condition form: Ready, Paused and the kind's own conditions.",
        "type": "array",
        "maxItems": 32,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "description": "One aspect of the object's state.",
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "type": {
                    "description": "Type of the condition, in CamelCase, e.g. Ready.",
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                },
                "status": {
                    "description": "Status of the condition: True, False or Unknown.",
                    "type": "string",
                    "enum": ["True", "False", "Unknown"]
                },
                "observedGeneration": {
                    "description": "The generation the condition was set for.",
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                },
                "lastTransitionTime": {
                    "description": "Last time the condition changed from one status to another.",
                    "type": "string",
                    "format": "date-time"
                },
                "reason": {
                    "description": "The reason for the last transition, in CamelCase.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "message": {
                    "description": "A human readable message with details about the last transition.",
                    "type": "string",
                    "maxLength": 32768
                }
            }
        }
    })
}
