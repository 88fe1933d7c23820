//! POST /convert: the CRDs' conversion webhook (apiextensions.k8s.io/v1 ConversionReview).
//! Every object is converted to `desiredAPIVersion`; one that cannot be fails the whole review
//! with a message naming it, as the API server expects.

use std::fmt::Display;

use kube::core::Status;
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use serde_json::Value;

/// The api crate's lossless converter, whose errors never quote the object.
fn convert(object: Value, desired_api_version: &str) -> Result<Value, String> {
    capkind_api::conversion::convert(object, desired_api_version).map_err(|e| e.to_string())
}

/// Answers a review with the real converter.
pub fn review(review: ConversionReview) -> Result<ConversionReview, String> {
    respond(review, convert)
}

/// Answers a review, converting with `convert`; Err when the review holds no request.
pub fn respond<E: Display>(
    review: ConversionReview,
    convert: impl Fn(Value, &str) -> Result<Value, E>,
) -> Result<ConversionReview, String> {
    let request = ConversionRequest::from_review(review).map_err(|e| e.to_string())?;
    let desired = request.desired_api_version.clone();
    let objects = request.objects.clone();
    let response = ConversionResponse::for_request(request);
    let mut converted = Vec::with_capacity(objects.len());
    for object in objects {
        let name = describe(&object);
        match convert(object, &desired) {
            Ok(o) => converted.push(o),
            Err(e) => {
                let message = format!("converting {name} to {desired}: {e}");
                tracing::warn!(reason = %message, "conversion failed");
                let status = Status::failure(&message, "ConversionFailed");
                return Ok(response.failure(status).into_review());
            }
        }
    }
    Ok(response.success(converted).into_review())
}

/// `KindCluster default/c1` (the namespace left out for cluster-scoped objects).
fn describe(object: &Value) -> String {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let (kind, namespace, name) = (
        text("/kind"),
        text("/metadata/namespace"),
        text("/metadata/name"),
    );
    let kind = if kind.is_empty() { "object" } else { kind };
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(objects: Vec<Value>) -> ConversionReview {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {
                "uid": "u1",
                "desiredAPIVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                "objects": objects,
            },
        }))
        .expect("review")
    }

    fn cluster(name: &str) -> Value {
        json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "KindCluster",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {},
        })
    }

    /// Sets the apiVersion; refuses objects named "bad".
    fn fake(mut o: Value, version: &str) -> Result<Value, String> {
        if o.pointer("/metadata/name") == Some(&json!("bad")) {
            return Err("spec.x cannot be expressed in v1beta1".into());
        }
        o["apiVersion"] = json!(version);
        Ok(o)
    }

    #[test]
    fn every_object_is_converted() {
        let out = respond(request(vec![cluster("a"), cluster("b")]), fake).expect("answered");
        let out = serde_json::to_value(out).expect("json");
        assert_eq!(out["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(out["kind"], "ConversionReview");
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["result"]["status"], "Success");
        let versions: Vec<_> = out["response"]["convertedObjects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|o| o["apiVersion"].clone())
            .collect();
        assert_eq!(
            versions,
            vec![json!("infrastructure.cluster.x-k8s.io/v1beta1"); 2]
        );
    }

    #[test]
    fn one_failure_fails_the_review_naming_the_object() {
        let out = respond(request(vec![cluster("a"), cluster("bad")]), fake).expect("answered");
        let out = serde_json::to_value(out).expect("json");
        assert_eq!(out["response"]["uid"], "u1");
        assert_eq!(out["response"]["result"]["status"], "Failure");
        assert_eq!(
            out["response"]["result"]["message"],
            "converting KindCluster ns/bad to infrastructure.cluster.x-k8s.io/v1beta1: spec.x cannot be expressed in v1beta1"
        );
        assert_eq!(out["response"]["convertedObjects"], json!([]));
    }

    #[test]
    fn a_review_without_a_request_is_refused() {
        let empty: ConversionReview = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
        }))
        .expect("review");
        assert_eq!(
            respond(empty, fake).expect_err("refused"),
            "request missing in ConversionReview"
        );
    }
}
