//! An in-memory API server for reconcile-level unit tests: objects kept as JSON by path, GET,
//! PATCH (merge, JSON patch, apply; `/status` too) and POST (events), and an object whose
//! finalizers are gone while it is being deleted disappears, as the real one does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use serde_json::{Value, json};

/// The fake API server; clones share their objects.
#[derive(Clone, Default)]
pub struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    /// Every request as `METHOD path`.
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// The path of an object.
pub fn path(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let plural = format!("{}s", kind.to_lowercase());
    let prefix = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    format!("{prefix}/namespaces/{namespace}/{plural}/{name}")
}

impl FakeApi {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `obj` (apiVersion, kind, metadata.namespace and name are read from it).
    pub fn put(&self, obj: Value) {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let key = path(
            s("/apiVersion"),
            s("/kind"),
            s("/metadata/namespace"),
            s("/metadata/name"),
        );
        self.objects().insert(key, obj);
    }

    /// The object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects().get(path).cloned()
    }

    /// The events posted so far: (type, reason).
    pub fn events(&self) -> Vec<(String, String)> {
        self.objects()
            .iter()
            .filter(|(k, _)| k.starts_with("event:"))
            .map(|(_, e)| {
                let s = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or_default();
                (s("/type").to_string(), s("/reason").to_string())
            })
            .collect()
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let api = api.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                let (code, answer) = api.answer(&parts, &body);
                let mut response = http::Response::new(kube::client::Body::from(
                    serde_json::to_vec(&answer).unwrap_or_default(),
                ));
                *response.status_mut() =
                    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK);
                response.headers_mut().insert(
                    "content-type",
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        Client::new(service, "default")
    }

    fn answer(&self, parts: &http::request::Parts, body: &[u8]) -> (u16, Value) {
        let path = parts.uri.path().to_string();
        if let Ok(mut r) = self.requests.lock() {
            r.push(format!("{} {path}", parts.method));
        }
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match parts.method.as_str() {
            "GET" => match self.get(&path) {
                Some(obj) => (200, obj),
                None => not_found(),
            },
            "POST" => {
                let n = self.objects().len();
                self.objects().insert(format!("event:{n}"), body.clone());
                (201, body)
            }
            "PATCH" => {
                let kind = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                self.patch(&path, &kind, body)
            }
            _ => (405, json!({})),
        }
    }

    fn patch(&self, path: &str, content_type: &str, body: Value) -> (u16, Value) {
        let (key, status) = match path.strip_suffix("/status") {
            Some(base) => (base.to_string(), true),
            None => (path.to_string(), false),
        };
        let mut objects = self.objects();
        let Some(obj) = objects.get_mut(&key) else {
            return not_found();
        };
        if content_type.contains("json-patch") {
            let Ok(patch) = serde_json::from_value::<json_patch::Patch>(body) else {
                return (400, json!({}));
            };
            if json_patch::patch(obj, &patch).is_err() {
                return (
                    422,
                    json!({"kind": "Status", "code": 422, "message": "test failed"}),
                );
            }
        } else if status && content_type.contains("apply-patch") {
            obj["status"] = body["status"].clone();
        } else {
            json_patch::merge(obj, &body);
        }
        let answer = obj.clone();
        let gone = answer.pointer("/metadata/deletionTimestamp").is_some()
            && answer
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if gone {
            objects.remove(&key);
        }
        (200, answer)
    }
}

fn not_found() -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}
