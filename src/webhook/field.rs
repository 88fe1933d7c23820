//! Field errors spelled as Kubernetes spells them (apimachinery's `field.Error`), and the
//! aggregated message of an Invalid status (`apierrors.NewInvalid`), so that a rejection from
//! this webhook reads like one from the API server's own validation.

use std::fmt;

use kube::core::response::{StatusCause, StatusDetails};

/// What is wrong with a field (apimachinery's `field.ErrorType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The value is not acceptable; holds the value as JSON.
    Invalid(String),
    /// A value is needed.
    Required,
    /// The value appears twice; holds the value as JSON.
    Duplicate(String),
    /// A list has more items than allowed; holds how many it has.
    TooMany(usize),
}

/// One problem with one field, e.g. `spec.network: Invalid value: "a b": must be ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, e.g. `spec.extraMounts[0].containerPath`.
    pub path: String,
    /// What kind of problem, with the value.
    pub kind: ErrorType,
    /// Why, for people (empty for duplicates).
    pub detail: String,
}

impl FieldError {
    /// The value at `path` is not acceptable because `detail`.
    pub fn invalid(
        path: impl Into<String>,
        value: &impl serde::Serialize,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            kind: ErrorType::Invalid(json(value)),
            detail: detail.into(),
        }
    }

    /// `path` needs a value.
    pub fn required(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind: ErrorType::Required,
            detail: detail.into(),
        }
    }

    /// The value at `path` was already used by an earlier item.
    pub fn duplicate(path: impl Into<String>, value: &impl serde::Serialize) -> Self {
        Self {
            path: path.into(),
            kind: ErrorType::Duplicate(json(value)),
            detail: String::new(),
        }
    }

    /// The list at `path` has `actual` items, more than `max`.
    pub fn too_many(path: impl Into<String>, actual: usize, max: usize) -> Self {
        Self {
            path: path.into(),
            kind: ErrorType::TooMany(actual),
            detail: format!("must have at most {max} items"),
        }
    }

    /// The cause type in a Status (apimachinery's `metav1.CauseType`).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorType::Invalid(_) => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate(_) => "FieldValueDuplicate",
            ErrorType::TooMany(_) => "FieldValueTooMany",
        }
    }

    /// The message without the path, as a Status cause carries it.
    pub fn body(&self) -> String {
        let with_detail = |head: String| {
            if self.detail.is_empty() {
                head
            } else {
                format!("{head}: {}", self.detail)
            }
        };
        match &self.kind {
            ErrorType::Invalid(v) => with_detail(format!("Invalid value: {v}")),
            ErrorType::Required => with_detail("Required value".into()),
            ErrorType::Duplicate(v) => with_detail(format!("Duplicate value: {v}")),
            ErrorType::TooMany(n) => with_detail(format!("Too many: {n}")),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.body())
    }
}

/// Values are shown as JSON: strings quoted, as Go's `%q` would.
fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "<unprintable>".into())
}

/// `KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: <error>` for one error,
/// `... is invalid: [<error>, <error>]` for more, as `apierrors.NewInvalid` writes it.
pub fn invalid_message(kind: &str, name: &str, errors: &[FieldError]) -> String {
    let list = match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("{kind}.{} {name:?} is invalid: {list}", capkind_api::GROUP)
}

/// The details of an Invalid status: the object and one cause per field error.
pub fn invalid_details(kind: &str, name: &str, errors: &[FieldError]) -> StatusDetails {
    StatusDetails {
        name: name.to_string(),
        group: capkind_api::GROUP.to_string(),
        kind: kind.to_string(),
        uid: String::new(),
        causes: errors
            .iter()
            .map(|e| StatusCause {
                reason: e.reason().to_string(),
                message: e.body(),
                field: e.path.clone(),
            })
            .collect(),
        retry_after_seconds: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_the_api_servers() {
        let cases = [
            (
                FieldError::invalid("spec.network", &"a b", "must be a Docker network name"),
                r#"spec.network: Invalid value: "a b": must be a Docker network name"#,
            ),
            (
                FieldError::required(
                    "spec.failureDomains[0].name",
                    "a failure domain needs a name",
                ),
                "spec.failureDomains[0].name: Required value: a failure domain needs a name",
            ),
            (
                FieldError::duplicate("spec.extraMounts[1].containerPath", &"/data"),
                r#"spec.extraMounts[1].containerPath: Duplicate value: "/data""#,
            ),
            (
                FieldError::too_many("spec.providerIDList", 10001, 10000),
                "spec.providerIDList: Too many: 10001: must have at most 10000 items",
            ),
            (
                FieldError::invalid(
                    "spec.template.spec",
                    &serde_json::json!({"a": 1}),
                    "is immutable",
                ),
                r#"spec.template.spec: Invalid value: {"a":1}: is immutable"#,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn one_error_stands_alone_and_more_are_listed() {
        let a = FieldError::invalid("spec.a", &1, "too small");
        let b = FieldError::required("spec.b", "needed");
        assert_eq!(
            invalid_message("KindMachine", "m1", std::slice::from_ref(&a)),
            r#"KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: spec.a: Invalid value: 1: too small"#
        );
        assert_eq!(
            invalid_message("KindMachine", "m1", &[a.clone(), b]),
            r#"KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: [spec.a: Invalid value: 1: too small, spec.b: Required value: needed]"#
        );
        let details = invalid_details("KindMachine", "m1", &[a]);
        assert_eq!(details.causes.len(), 1);
        assert_eq!(details.causes[0].field, "spec.a");
        assert_eq!(details.causes[0].reason, "FieldValueInvalid");
        assert_eq!(details.causes[0].message, "Invalid value: 1: too small");
    }
}
