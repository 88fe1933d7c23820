//! The admission webhooks (admission.k8s.io/v1 AdmissionReview): defaulting answers with a JSON
//! patch, validation with an Invalid status in the API server's words. Both only translate
//! between the review and the pure rules of [`super::defaults`] and [`super::validate`].

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::Status;
use tracing::{debug, info};

use super::field;
use super::kinds::{Kind, Object, VERSION};
use super::metrics::Outcome;
use super::{defaults, validate};

/// What a route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Defaulting (the mutating webhook).
    Mutate,
    /// Validation.
    Validate,
}

/// The answer to a review, as the JSON to send; Err (for a 400) when the review holds no
/// request.
pub fn answer(
    kind: Kind,
    action: Action,
    review: AdmissionReview<DynamicObject>,
) -> Result<(serde_json::Value, Outcome), String> {
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| e.to_string())?;
    let response = match wrong_kind(kind, &request) {
        Some(refusal) => refusal,
        None => match action {
            Action::Mutate => mutate(kind, &request),
            Action::Validate => check(kind, &request),
        },
    };
    let outcome = if response.allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    };
    if !response.allowed {
        info!(
            kind = kind.as_str(),
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            operation = ?request.operation,
            reason = %response.result.message,
            "admission refused"
        );
    }
    let mut json = serde_json::to_value(response.into_review()).map_err(|e| e.to_string())?;
    base64_patch(&mut json);
    Ok((json, outcome))
}

/// kube writes the patch bytes as an array of numbers (kube-rs/kube#1781); the API documents
/// base64 (Go's encoding of `[]byte`), which is what is sent.
fn base64_patch(review: &mut serde_json::Value) {
    use base64::Engine;
    let Some(patch) = review.pointer_mut("/response/patch") else {
        return;
    };
    if let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone()) {
        *patch = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    }
}

fn refuse(request: &AdmissionRequest<DynamicObject>, status: Status) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    response.allowed = false;
    response.result = status;
    response
}

fn bad_request(request: &AdmissionRequest<DynamicObject>, message: String) -> AdmissionResponse {
    refuse(
        request,
        Status::failure(&message, "BadRequest").with_code(400),
    )
}

/// A request for another kind or version than the route serves: the webhook configuration's
/// rules and the routes disagree.
fn wrong_kind(kind: Kind, request: &AdmissionRequest<DynamicObject>) -> Option<AdmissionResponse> {
    let k = &request.kind;
    if k.group == capkind_api::GROUP && k.version == VERSION && k.kind == kind.as_str() {
        return None;
    }
    let message = format!(
        "this webhook serves {}/{VERSION} {}, not {}/{} {}; check the rules of the webhook configuration",
        capkind_api::GROUP,
        kind.as_str(),
        k.group,
        k.version,
        k.kind
    );
    Some(bad_request(request, message))
}

/// Reads the typed object out of the request's `object` or `oldObject`.
fn typed(
    kind: Kind,
    object: Option<&DynamicObject>,
    which: &str,
) -> Result<(Object, serde_json::Value), String> {
    let object = object.ok_or_else(|| format!("the AdmissionReview has no {which}"))?;
    let raw = serde_json::to_value(object).map_err(|e| format!("cannot read the {which}: {e}"))?;
    let typed = Object::from_value(kind, raw.clone()).map_err(|e| {
        format!(
            "the {which} is not a valid {}/{VERSION} {}: {e}",
            capkind_api::GROUP,
            kind.as_str()
        )
    })?;
    Ok((typed, raw))
}

fn mutate(kind: Kind, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return AdmissionResponse::from(request);
    }
    let (mut object, raw) = match typed(kind, request.object.as_ref(), "object") {
        Ok(o) => o,
        Err(message) => return bad_request(request, message),
    };
    defaults::object(&mut object);
    let patch = defaults::spec_patch(raw.get("spec"), &object.spec_value());
    if patch.0.is_empty() {
        return AdmissionResponse::from(request);
    }
    debug!(kind = kind.as_str(), name = %request.name, patch = ?patch, "defaulted");
    match AdmissionResponse::from(request).with_patch(patch) {
        Ok(response) => response,
        Err(e) => bad_request(request, format!("cannot write the defaults patch: {e}")),
    }
}

fn check(kind: Kind, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let verdict = match request.operation {
        Operation::Create => {
            typed(kind, request.object.as_ref(), "object").map(|(new, _)| validate::create(&new))
        }
        Operation::Update => typed(kind, request.object.as_ref(), "object").and_then(|(new, _)| {
            let (old, _) = typed(kind, request.old_object.as_ref(), "oldObject")?;
            Ok(validate::update(&old, &new, request.dry_run))
        }),
        // Deleting is always allowed: a rule must never keep an object from going away.
        Operation::Delete | Operation::Connect => return AdmissionResponse::from(request),
    };
    let verdict = match verdict {
        Ok(v) => v,
        Err(message) => return bad_request(request, message),
    };
    let mut response = if verdict.errors.is_empty() {
        AdmissionResponse::from(request)
    } else {
        let name = object_name(request);
        let status = Status::failure(
            &field::invalid_message(kind.as_str(), &name, &verdict.errors),
            "Invalid",
        )
        .with_code(422)
        .with_details(field::invalid_details(
            kind.as_str(),
            &name,
            &verdict.errors,
        ));
        refuse(request, status)
    };
    if !verdict.warnings.is_empty() {
        response.warnings = Some(verdict.warnings);
    }
    response
}

/// The request's name, else the object's (a create with generateName has neither yet).
fn object_name(request: &AdmissionRequest<DynamicObject>) -> String {
    if !request.name.is_empty() {
        return request.name.clone();
    }
    request
        .object
        .as_ref()
        .and_then(|o| o.metadata.name.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::{Value, json};

    fn review(
        kind: &str,
        operation: &str,
        object: Value,
        old: Value,
        dry_run: bool,
    ) -> AdmissionReview<DynamicObject> {
        serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "infrastructure.cluster.x-k8s.io", "version": "v1beta2", "kind": kind},
                "resource": {"group": "infrastructure.cluster.x-k8s.io", "version": "v1beta2", "resource": format!("{}s", kind.to_lowercase())},
                "name": "m1",
                "namespace": "ns",
                "operation": operation,
                "userInfo": {"username": "someone"},
                "object": object,
                "oldObject": old,
                "dryRun": dry_run,
            },
        }))
        .expect("review")
    }

    fn machine(spec: Value) -> Value {
        json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "KindMachine",
            "metadata": {"name": "m1", "namespace": "ns"},
            "spec": spec,
        })
    }

    fn response(
        kind: Kind,
        action: Action,
        review: AdmissionReview<DynamicObject>,
    ) -> (Value, Outcome) {
        let (out, outcome) = answer(kind, action, review).expect("answered");
        assert_eq!(
            (&out["apiVersion"], &out["kind"]),
            (&json!("admission.k8s.io/v1"), &json!("AdmissionReview"))
        );
        (out["response"].clone(), outcome)
    }

    #[test]
    fn defaulting_answers_with_a_json_patch() {
        let r = review(
            "KindMachine",
            "CREATE",
            machine(json!({"bootstrapTimeout": ""})),
            Value::Null,
            false,
        );
        let (out, outcome) = response(Kind::KindMachine, Action::Mutate, r);
        assert_eq!(outcome, Outcome::Allowed);
        assert_eq!(
            (out["uid"].clone(), out["allowed"].clone()),
            (json!("u1"), json!(true))
        );
        assert_eq!(out["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(out["patch"].as_str().expect("a base64 patch"))
            .expect("base64");
        assert_eq!(
            serde_json::from_slice::<Value>(&patch).expect("patch json"),
            json!([{"op": "replace", "path": "/spec/bootstrapTimeout", "value": "5m"}])
        );
        let done = review(
            "KindMachine",
            "CREATE",
            machine(json!({"bootstrapTimeout": "5m"})),
            Value::Null,
            false,
        );
        let (out, _) = response(Kind::KindMachine, Action::Mutate, done);
        assert_eq!(out.get("patch"), None, "{out}");
    }

    #[test]
    fn validation_refuses_with_an_invalid_status() {
        let r = review(
            "KindMachine",
            "CREATE",
            machine(json!({"bootstrapTimeout": "0s"})),
            Value::Null,
            false,
        );
        let (out, outcome) = response(Kind::KindMachine, Action::Validate, r);
        assert_eq!(outcome, Outcome::Denied);
        assert_eq!(out["allowed"], false);
        assert_eq!(
            out["status"],
            json!({
                "status": "Failure",
                "code": 422,
                "reason": "Invalid",
                "message": r#"KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: spec.bootstrapTimeout: Invalid value: "0s": must be more than 0"#,
                "details": {
                    "name": "m1",
                    "group": "infrastructure.cluster.x-k8s.io",
                    "kind": "KindMachine",
                    "causes": [{"reason": "FieldValueInvalid", "message": r#"Invalid value: "0s": must be more than 0"#, "field": "spec.bootstrapTimeout"}],
                },
            })
        );
    }

    #[test]
    fn updates_deletes_and_warnings() {
        let old = machine(json!({"bootstrapTimeout": "5m"}));
        let set_id = machine(json!({"bootstrapTimeout": "5m", "providerID": "kind://c/kind/m1"}));
        let (out, _) = response(
            Kind::KindMachine,
            Action::Validate,
            review("KindMachine", "UPDATE", set_id, old.clone(), false),
        );
        assert_eq!(out["allowed"], true, "{out}");
        let changed = machine(json!({"bootstrapTimeout": "6m"}));
        let (out, _) = response(
            Kind::KindMachine,
            Action::Validate,
            review("KindMachine", "UPDATE", changed, old.clone(), false),
        );
        assert_eq!(
            out["status"]["message"],
            r#"KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: spec.bootstrapTimeout: Invalid value: "6m": field is immutable"#
        );
        let (out, _) = response(
            Kind::KindMachine,
            Action::Validate,
            review("KindMachine", "DELETE", Value::Null, old, false),
        );
        assert_eq!(out["allowed"], true);
        let untagged = machine(json!({"bootstrapTimeout": "5m", "customImage": "my/node"}));
        let (out, _) = response(
            Kind::KindMachine,
            Action::Validate,
            review("KindMachine", "CREATE", untagged, Value::Null, false),
        );
        assert_eq!(out["allowed"], true);
        assert_eq!(
            out["warnings"],
            json!([
                r#"spec.customImage: "my/node" names no tag, so Docker takes :latest, which can change under a running cluster"#
            ])
        );
    }

    #[test]
    fn another_kind_or_an_unreadable_object_is_refused_with_the_reason() {
        let r = review(
            "KindCluster",
            "CREATE",
            machine(json!({})),
            Value::Null,
            false,
        );
        let (out, outcome) = response(Kind::KindMachine, Action::Validate, r);
        assert_eq!(outcome, Outcome::Denied);
        assert_eq!(out["status"]["code"], 400);
        assert_eq!(
            out["status"]["message"],
            "this webhook serves infrastructure.cluster.x-k8s.io/v1beta2 KindMachine, not infrastructure.cluster.x-k8s.io/v1beta2 KindCluster; check the rules of the webhook configuration"
        );
        let r = review(
            "KindMachine",
            "CREATE",
            machine(json!({"extraMounts": "no"})),
            Value::Null,
            false,
        );
        let (out, _) = response(Kind::KindMachine, Action::Mutate, r);
        let message = out["status"]["message"].as_str().expect("message");
        assert!(
            message.starts_with("the object is not a valid infrastructure.cluster.x-k8s.io/v1beta2 KindMachine: invalid type: string \"no\""),
            "{message}"
        );
    }
}
