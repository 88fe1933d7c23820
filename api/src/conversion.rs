//! Conversion between the v1beta1 and v1beta2 versions of the capkind kinds, for the CRD
//! conversion webhook: typed functions per kind and direction, and [`convert`] on JSON.
//!
//! # The plain mapping
//!
//! Field by field, as Cluster API maps its own types:
//!
//! | v1beta1 | v1beta2 |
//! | --- | --- |
//! | `status.ready` | `status.initialization.provisioned` (`Some(true)` when ready) |
//! | `status.conditions` (v1beta1 shape) | `status.deprecated.v1beta1.conditions` |
//! | `status.failureReason`, `status.failureMessage` | `status.deprecated.v1beta1.*` |
//! | `status.v1beta2.conditions` | `status.conditions` |
//! | `failureDomains` map by name | list sorted by name, `controlPlane` always written |
//! | `spec.providerID` unset | `spec.providerID` empty |
//! | a pool's `status.instances[].providerID` unset | the same, empty |
//! | `spec.controlPlaneEndpoint.port` | the same port, always set; unset reads as 6443 |
//!
//! Everything else, metadata included, is copied; a KindMachinePool has `status.ready` and
//! `status.initialization` in both versions (Cluster API's MachinePool controller still reads
//! `ready`), so both are copied as they are.
//!
//! # Losslessness
//!
//! The plain mapping loses what one version cannot say: a v1beta1 object that is not ready
//! but provisioned, a v1beta2 failure domain whose `controlPlane` is left out, a v1beta1
//! `providerID: ""`, a v1beta2 port left out, an empty map that is not absent, an unsorted or
//! duplicated failure-domain list. So a conversion also checks whether converting its result
//! back with the plain mapping gives the source's spec and status; only when it does not, it
//! stores the source's spec and status as JSON in the annotation [`DATA_ANNOTATION`] of the
//! result. Objects the controller writes, which keep `ready` and `initialization` in step,
//! and objects the defaulting webhook has seen (it writes every `controlPlane`), convert
//! without it. A v1beta1 reader of an object that needs it sees the annotation, as Cluster
//! API's own `cluster.x-k8s.io/conversion-data` shows on its v1beta1 objects.
//!
//! A conversion that finds the annotation on its input (holding spec and status in the
//! version it converts to) strips it and uses the stored copy only if converting that copy
//! with the plain mapping gives exactly the input's spec and status, that is if nobody changed
//! the object since the annotation was written; a stale or unreadable annotation is dropped and
//! the plain mapping applies. Either way the annotation never survives a round trip, and an
//! object converted there and back again is the object it was.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{GROUP, v1beta1, v1beta2};

/// The annotation that carries what the other version cannot represent, as JSON.
pub const DATA_ANNOTATION: &str = "capkind.x-k8s.io/conversion-data";

/// A version of the capkind API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1Beta1,
    V1Beta2,
}

impl Version {
    /// Every version the CRDs serve.
    pub const ALL: [Version; 2] = [Version::V1Beta1, Version::V1Beta2];

    /// The version as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1Beta1 => "v1beta1",
            Version::V1Beta2 => "v1beta2",
        }
    }

    /// The full apiVersion, `infrastructure.cluster.x-k8s.io/<version>`.
    pub fn api_version(self) -> String {
        format!("{GROUP}/{}", self.as_str())
    }

    /// The version named by a full apiVersion of the capkind group.
    pub fn from_api_version(api_version: &str) -> Option<Version> {
        let (group, version) = api_version.split_once('/')?;
        if group != GROUP {
            return None;
        }
        Self::ALL.into_iter().find(|v| v.as_str() == version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capkind kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    KindCluster,
    KindClusterTemplate,
    KindMachine,
    KindMachineTemplate,
    KindMachinePool,
    KindMachinePoolTemplate,
}

impl Kind {
    /// Every kind the conversion handles.
    pub const ALL: [Kind; 6] = [
        Kind::KindCluster,
        Kind::KindClusterTemplate,
        Kind::KindMachine,
        Kind::KindMachineTemplate,
        Kind::KindMachinePool,
        Kind::KindMachinePoolTemplate,
    ];

    /// The kind as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KindCluster => "KindCluster",
            Kind::KindClusterTemplate => "KindClusterTemplate",
            Kind::KindMachine => "KindMachine",
            Kind::KindMachineTemplate => "KindMachineTemplate",
            Kind::KindMachinePool => "KindMachinePool",
            Kind::KindMachinePoolTemplate => "KindMachinePoolTemplate",
        }
    }

    /// The kind of that name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why [`convert`] could not convert an object. Never carries the object's content: a field's
/// value may be anything, so decode errors name the field and the kind of value only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// The object is not a JSON object with a string `apiVersion` or `kind`.
    #[error("the object has no {field} string")]
    MissingTypeField { field: &'static str },
    /// The object's apiVersion is not one the CRDs serve.
    #[error("apiVersion {api_version:?} is not served; served: {}", served())]
    UnknownApiVersion { api_version: String },
    /// The requested apiVersion is not one the CRDs serve.
    #[error("cannot convert to apiVersion {api_version:?}; served: {}", served())]
    UnknownDesiredVersion { api_version: String },
    /// The object's kind is not a capkind kind.
    #[error("kind {kind:?} is not converted here; known kinds: {}", known_kinds())]
    UnknownKind { kind: String },
    /// The object does not decode as its kind and version.
    #[error("{version} {kind} does not decode at {path}: {reason}")]
    Decode {
        kind: Kind,
        version: Version,
        /// Where in the object, with map keys (user data) shown as `*`.
        path: String,
        /// serde's message, without the value it found.
        reason: String,
    },
    /// The converted object does not encode as JSON.
    #[error("the converted {version} {kind} does not encode: {reason}")]
    Encode {
        kind: Kind,
        version: Version,
        reason: String,
    },
}

fn served() -> String {
    let versions: Vec<String> = Version::ALL.iter().map(|v| v.api_version()).collect();
    versions.join(", ")
}

fn known_kinds() -> String {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    kinds.join(", ")
}

/// Converts a KindCluster from v1beta1 to v1beta2.
pub fn kind_cluster_to_v1beta2(object: v1beta1::KindCluster) -> v1beta2::KindCluster {
    convert_object(object)
}

/// Converts a KindCluster from v1beta2 to v1beta1.
pub fn kind_cluster_to_v1beta1(object: v1beta2::KindCluster) -> v1beta1::KindCluster {
    convert_object(object)
}

/// Converts a KindClusterTemplate from v1beta1 to v1beta2.
pub fn kind_cluster_template_to_v1beta2(
    object: v1beta1::KindClusterTemplate,
) -> v1beta2::KindClusterTemplate {
    convert_object(object)
}

/// Converts a KindClusterTemplate from v1beta2 to v1beta1.
pub fn kind_cluster_template_to_v1beta1(
    object: v1beta2::KindClusterTemplate,
) -> v1beta1::KindClusterTemplate {
    convert_object(object)
}

/// Converts a KindMachine from v1beta1 to v1beta2.
pub fn kind_machine_to_v1beta2(object: v1beta1::KindMachine) -> v1beta2::KindMachine {
    convert_object(object)
}

/// Converts a KindMachine from v1beta2 to v1beta1.
pub fn kind_machine_to_v1beta1(object: v1beta2::KindMachine) -> v1beta1::KindMachine {
    convert_object(object)
}

/// Converts a KindMachineTemplate from v1beta1 to v1beta2.
pub fn kind_machine_template_to_v1beta2(
    object: v1beta1::KindMachineTemplate,
) -> v1beta2::KindMachineTemplate {
    convert_object(object)
}

/// Converts a KindMachineTemplate from v1beta2 to v1beta1.
pub fn kind_machine_template_to_v1beta1(
    object: v1beta2::KindMachineTemplate,
) -> v1beta1::KindMachineTemplate {
    convert_object(object)
}

/// Converts a KindMachinePool from v1beta1 to v1beta2.
pub fn kind_machine_pool_to_v1beta2(object: v1beta1::KindMachinePool) -> v1beta2::KindMachinePool {
    convert_object(object)
}

/// Converts a KindMachinePool from v1beta2 to v1beta1.
pub fn kind_machine_pool_to_v1beta1(object: v1beta2::KindMachinePool) -> v1beta1::KindMachinePool {
    convert_object(object)
}

/// Converts a KindMachinePoolTemplate from v1beta1 to v1beta2.
pub fn kind_machine_pool_template_to_v1beta2(
    object: v1beta1::KindMachinePoolTemplate,
) -> v1beta2::KindMachinePoolTemplate {
    convert_object(object)
}

/// Converts a KindMachinePoolTemplate from v1beta2 to v1beta1.
pub fn kind_machine_pool_template_to_v1beta1(
    object: v1beta2::KindMachinePoolTemplate,
) -> v1beta1::KindMachinePoolTemplate {
    convert_object(object)
}

/// Removes every `null` member of every object in `value`: Kubernetes treats a null field as
/// absent (the API server sends nulls in the partial objects it converts for managed fields,
/// e.g. `status.conditions: null`), while serde would refuse a null where a list is expected.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Converts one object of a ConversionReview to `desired_api_version` (a full apiVersion such as
/// `infrastructure.cluster.x-k8s.io/v1beta2`). An object already at that version comes back
/// unchanged; a converted one has the desired `apiVersion` and its `kind`.
pub fn convert(object: Value, desired_api_version: &str) -> Result<Value, ConversionError> {
    let api_version = type_field(&object, "apiVersion")?;
    let version = Version::from_api_version(api_version).ok_or_else(|| {
        ConversionError::UnknownApiVersion {
            api_version: api_version.to_string(),
        }
    })?;
    let kind_name = type_field(&object, "kind")?;
    let kind = Kind::from_name(kind_name).ok_or_else(|| ConversionError::UnknownKind {
        kind: kind_name.to_string(),
    })?;
    let desired = Version::from_api_version(desired_api_version).ok_or_else(|| {
        ConversionError::UnknownDesiredVersion {
            api_version: desired_api_version.to_string(),
        }
    })?;
    if version == desired {
        return Ok(object);
    }
    let mut object = object;
    strip_nulls(&mut object);
    let (from, to) = (version, desired);
    match (kind, version) {
        (Kind::KindCluster, Version::V1Beta1) => {
            via(object, kind, from, to, kind_cluster_to_v1beta2)
        }
        (Kind::KindCluster, Version::V1Beta2) => {
            via(object, kind, from, to, kind_cluster_to_v1beta1)
        }
        (Kind::KindClusterTemplate, Version::V1Beta1) => {
            via(object, kind, from, to, kind_cluster_template_to_v1beta2)
        }
        (Kind::KindClusterTemplate, Version::V1Beta2) => {
            via(object, kind, from, to, kind_cluster_template_to_v1beta1)
        }
        (Kind::KindMachine, Version::V1Beta1) => {
            via(object, kind, from, to, kind_machine_to_v1beta2)
        }
        (Kind::KindMachine, Version::V1Beta2) => {
            via(object, kind, from, to, kind_machine_to_v1beta1)
        }
        (Kind::KindMachineTemplate, Version::V1Beta1) => {
            via(object, kind, from, to, kind_machine_template_to_v1beta2)
        }
        (Kind::KindMachineTemplate, Version::V1Beta2) => {
            via(object, kind, from, to, kind_machine_template_to_v1beta1)
        }
        (Kind::KindMachinePool, Version::V1Beta1) => {
            via(object, kind, from, to, kind_machine_pool_to_v1beta2)
        }
        (Kind::KindMachinePool, Version::V1Beta2) => {
            via(object, kind, from, to, kind_machine_pool_to_v1beta1)
        }
        (Kind::KindMachinePoolTemplate, Version::V1Beta1) => via(
            object,
            kind,
            from,
            to,
            kind_machine_pool_template_to_v1beta2,
        ),
        (Kind::KindMachinePoolTemplate, Version::V1Beta2) => via(
            object,
            kind,
            from,
            to,
            kind_machine_pool_template_to_v1beta1,
        ),
    }
}

fn type_field<'a>(object: &'a Value, field: &'static str) -> Result<&'a str, ConversionError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or(ConversionError::MissingTypeField { field })
}

/// Decodes `object`, converts it with `conversion` and encodes the result; the typed objects
/// write their own apiVersion and kind.
fn via<A: DeserializeOwned, B: Serialize>(
    object: Value,
    kind: Kind,
    from: Version,
    to: Version,
    conversion: fn(A) -> B,
) -> Result<Value, ConversionError> {
    let typed: A =
        serde_path_to_error::deserialize(object).map_err(|e| ConversionError::Decode {
            kind,
            version: from,
            path: redacted_path(e.path()),
            reason: redacted_reason(&e.inner().to_string()),
        })?;
    serde_json::to_value(conversion(typed)).map_err(|e| ConversionError::Encode {
        kind,
        version: to,
        reason: e.to_string(),
    })
}

/// Fields whose values are maps keyed by user data: the key after one of them is shown as `*`.
/// Every other path segment names a field of the types (unknown fields are skipped, never
/// reported).
const MAP_FIELDS: [&str; 5] = [
    "labels",
    "annotations",
    "failureDomains",
    "attributes",
    "capacity",
];

/// The path of a decode error, with map keys hidden: `spec.failureDomains.*.controlPlane`.
fn redacted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let mut key_next = false;
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                out.push_str(&format!("[{index}]"));
                key_next = false;
            }
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                if key_next {
                    out.push('*');
                    key_next = false;
                } else {
                    out.push_str(key);
                    key_next = MAP_FIELDS.contains(&key.as_str());
                }
            }
            Segment::Enum { .. } | Segment::Unknown => {
                out.push_str(".?");
                key_next = false;
            }
        }
    }
    if out.is_empty() { ".".to_string() } else { out }
}

/// serde's message without the value it quotes: `invalid type: string "…", expected i32`
/// becomes `invalid type: string, expected i32`. Messages of other shapes (from custom
/// deserializers such as timestamps) may quote the value anywhere, so only their gist is kept.
fn redacted_reason(message: &str) -> String {
    const KEPT_AS_IS: [&str; 3] = ["missing field ", "duplicate field ", "invalid length "];
    if KEPT_AS_IS.iter().any(|p| message.starts_with(p)) {
        return message.to_string();
    }
    // serde writes the expectation, from the types, after the value: the last match is it.
    let expected = message.rfind(", expected ").map_or("", |i| &message[i..]);
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The kind of value ("string", "integer", "map") comes before any quoted value.
            let end = rest.find(['`', '"', ',']).unwrap_or(rest.len());
            return format!("{prefix}{}{expected}", rest[..end].trim());
        }
    }
    for prefix in ["unknown variant", "unknown field"] {
        if message.starts_with(prefix) {
            return format!("{prefix}{expected}");
        }
    }
    "invalid value".to_string()
}

/// Spec and status of an object: what the mappings convert and the annotation stores.
#[derive(Clone, Debug, PartialEq)]
struct Body<S, T> {
    spec: S,
    status: Option<T>,
}

/// The annotation's content: the source's spec and status, and whether the source had an
/// empty (not absent) annotation map before the annotation was added to it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored<S, T> {
    spec: S,
    // Missing reads as None without the `T: Default` bound `default` would add.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<T>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    empty_annotations: bool,
}

/// One kind in one version, as the conversion sees it: metadata, a body, and the plain mapping
/// of the body to the other version.
trait Versioned: Sized {
    type Spec: Clone + PartialEq + Serialize + DeserializeOwned;
    type Status: Clone + PartialEq + Serialize + DeserializeOwned;
    type Other: Versioned<Other = Self>;

    fn into_parts(self) -> (ObjectMeta, Body<Self::Spec, Self::Status>);
    fn from_parts(metadata: ObjectMeta, body: Body<Self::Spec, Self::Status>) -> Self;
    fn map_spec(spec: Self::Spec) -> <Self::Other as Versioned>::Spec;
    fn map_status(status: Self::Status) -> <Self::Other as Versioned>::Status;
}

/// Implements [`Versioned`] for a kind whose parts are its metadata, spec and status, with the
/// functions of its plain mapping to the other version; a kind without status (a cluster
/// template) has `()` for one.
macro_rules! versioned {
    ($kind:ty => $other:ty,
     spec: $spec:ty => $map_spec:path,
     status: $status:ty => $map_status:path) => {
        impl Versioned for $kind {
            type Spec = $spec;
            type Status = $status;
            type Other = $other;

            fn into_parts(self) -> (ObjectMeta, Body<$spec, $status>) {
                let body = Body {
                    spec: self.spec,
                    status: self.status,
                };
                (self.metadata, body)
            }

            fn from_parts(metadata: ObjectMeta, body: Body<$spec, $status>) -> Self {
                Self {
                    metadata,
                    spec: body.spec,
                    status: body.status,
                }
            }

            fn map_spec(spec: $spec) -> <$other as Versioned>::Spec {
                $map_spec(spec)
            }

            fn map_status(status: $status) -> <$other as Versioned>::Status {
                $map_status(status)
            }
        }
    };
    ($kind:ty => $other:ty, spec: $spec:ty => $map_spec:path) => {
        impl Versioned for $kind {
            type Spec = $spec;
            type Status = ();
            type Other = $other;

            fn into_parts(self) -> (ObjectMeta, Body<$spec, ()>) {
                let body = Body {
                    spec: self.spec,
                    status: None,
                };
                (self.metadata, body)
            }

            fn from_parts(metadata: ObjectMeta, body: Body<$spec, ()>) -> Self {
                Self {
                    metadata,
                    spec: body.spec,
                }
            }

            fn map_spec(spec: $spec) -> <$other as Versioned>::Spec {
                $map_spec(spec)
            }

            fn map_status(status: ()) {
                status
            }
        }
    };
}

type OtherBody<A> = Body<
    <<A as Versioned>::Other as Versioned>::Spec,
    <<A as Versioned>::Other as Versioned>::Status,
>;

fn map_body<A: Versioned>(body: Body<A::Spec, A::Status>) -> OtherBody<A> {
    Body {
        spec: A::map_spec(body.spec),
        status: body.status.map(A::map_status),
    }
}

/// The conversion with the annotation scheme of the module doc.
fn convert_object<A: Versioned>(object: A) -> A::Other {
    let (mut metadata, body) = object.into_parts();
    if let Some(stored) = take_stored(&mut metadata) {
        let restored = Body {
            spec: stored.spec,
            status: stored.status,
        };
        if map_body::<A::Other>(restored.clone()) == body {
            if stored.empty_annotations {
                metadata.annotations.get_or_insert_default();
            }
            return A::Other::from_parts(metadata, restored);
        }
    }
    let mapped = map_body::<A>(body.clone());
    if map_body::<A::Other>(mapped.clone()) != body {
        store(&mut metadata, body);
    }
    A::Other::from_parts(metadata, mapped)
}

/// Removes the annotation, and an annotation map it leaves empty; returns what it stored if
/// that reads as spec and status of the expected types.
fn take_stored<S, T>(metadata: &mut ObjectMeta) -> Option<Stored<S, T>>
where
    S: DeserializeOwned,
    T: DeserializeOwned,
{
    let annotations = metadata.annotations.as_mut()?;
    let data = annotations.remove(DATA_ANNOTATION)?;
    if annotations.is_empty() {
        metadata.annotations = None;
    }
    serde_json::from_str(&data).ok()
}

fn store<S: Serialize, T: Serialize>(metadata: &mut ObjectMeta, body: Body<S, T>) {
    let stored = Stored {
        spec: body.spec,
        status: body.status,
        empty_annotations: metadata
            .annotations
            .as_ref()
            .is_some_and(BTreeMap::is_empty),
    };
    // These types always encode (their maps have string keys); were one not to, leaving the
    // annotation out would lose only what the plain mapping loses.
    if let Ok(data) = serde_json::to_string(&stored) {
        metadata
            .annotations
            .get_or_insert_default()
            .insert(DATA_ANNOTATION.to_string(), data);
    }
}

// ---- The plain mapping, shared parts.

type FailureDomainMap = BTreeMap<String, v1beta1::FailureDomainSpec>;

fn failure_domains_to_v1beta2(map: Option<FailureDomainMap>) -> Vec<v1beta2::FailureDomain> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(name, domain)| {
            let v1beta1::FailureDomainSpec {
                control_plane,
                attributes,
            } = domain;
            v1beta2::FailureDomain {
                name,
                // Explicit, as the defaulting webhook writes it on every stored object, so
                // the objects the API server holds convert without the annotation.
                control_plane: Some(control_plane),
                attributes,
            }
        })
        .collect()
}

fn failure_domains_to_v1beta1(list: Vec<v1beta2::FailureDomain>) -> Option<FailureDomainMap> {
    if list.is_empty() {
        return None;
    }
    let map = list
        .into_iter()
        .map(|domain| {
            let v1beta2::FailureDomain {
                name,
                control_plane,
                attributes,
            } = domain;
            let spec = v1beta1::FailureDomainSpec {
                control_plane: control_plane.unwrap_or(false),
                attributes,
            };
            (name, spec)
        })
        .collect();
    Some(map)
}

/// v1beta2's initialization from v1beta1's: provisioned once ready, whatever it said before.
fn initialization_to_v1beta2(
    ready: bool,
    initialization: Option<v1beta1::Initialization>,
) -> Option<v1beta2::Initialization> {
    if ready {
        let mut initialization = initialization.unwrap_or_default();
        initialization.provisioned = Some(true);
        Some(initialization)
    } else {
        initialization
    }
}

/// v1beta1's ready: provisioned.
fn ready_from(initialization: Option<&v1beta2::Initialization>) -> bool {
    initialization.and_then(|i| i.provisioned) == Some(true)
}

fn deprecated_to_v1beta2(fields: v1beta2::V1Beta1Deprecated) -> Option<v1beta2::Deprecated> {
    if fields == v1beta2::V1Beta1Deprecated::default() {
        None
    } else {
        Some(v1beta2::Deprecated {
            v1beta1: Some(fields),
        })
    }
}

fn deprecated_to_v1beta1(deprecated: Option<v1beta2::Deprecated>) -> v1beta2::V1Beta1Deprecated {
    deprecated.and_then(|d| d.v1beta1).unwrap_or_default()
}

type MetaConditions = Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>;

fn v1beta2_status_to_v1beta1(conditions: MetaConditions) -> Option<v1beta1::V1Beta2Status> {
    (!conditions.is_empty()).then_some(v1beta1::V1Beta2Status { conditions })
}

fn v1beta2_status_to_v1beta2(status: Option<v1beta1::V1Beta2Status>) -> MetaConditions {
    status.map(|s| s.conditions).unwrap_or_default()
}

/// v1beta2's provider ID: empty when v1beta1 has none.
fn provider_id_to_v1beta2(provider_id: Option<String>) -> String {
    provider_id.unwrap_or_default()
}

/// v1beta1's provider ID: none when v1beta2's is empty.
fn provider_id_to_v1beta1(provider_id: String) -> Option<String> {
    (!provider_id.is_empty()).then_some(provider_id)
}

// ---- KindCluster and KindClusterTemplate.

fn cluster_spec_to_v1beta2(spec: v1beta1::KindClusterSpec) -> v1beta2::KindClusterSpec {
    let v1beta1::KindClusterSpec {
        control_plane_endpoint,
        load_balancer,
        network,
        failure_domains,
    } = spec;
    v1beta2::KindClusterSpec {
        control_plane_endpoint: control_plane_endpoint.map(|e| v1beta2::ApiEndpoint {
            host: e.host,
            port: Some(e.port),
        }),
        load_balancer,
        network,
        failure_domains: failure_domains_to_v1beta2(failure_domains),
    }
}

fn cluster_spec_to_v1beta1(spec: v1beta2::KindClusterSpec) -> v1beta1::KindClusterSpec {
    let v1beta2::KindClusterSpec {
        control_plane_endpoint,
        load_balancer,
        network,
        failure_domains,
    } = spec;
    v1beta1::KindClusterSpec {
        control_plane_endpoint: control_plane_endpoint.map(|e| v1beta1::ApiEndpoint {
            port: e.port(),
            host: e.host,
        }),
        load_balancer,
        network,
        failure_domains: failure_domains_to_v1beta1(failure_domains),
    }
}

fn cluster_status_to_v1beta2(status: v1beta1::KindClusterStatus) -> v1beta2::KindClusterStatus {
    let v1beta1::KindClusterStatus {
        ready,
        initialization,
        failure_domains,
        conditions,
        v1beta2,
        failure_reason,
        failure_message,
        observed_generation,
    } = status;
    v1beta2::KindClusterStatus {
        initialization: initialization_to_v1beta2(ready, initialization),
        failure_domains: failure_domains_to_v1beta2(failure_domains),
        conditions: v1beta2_status_to_v1beta2(v1beta2),
        observed_generation,
        deprecated: deprecated_to_v1beta2(v1beta2::V1Beta1Deprecated {
            conditions,
            failure_reason,
            failure_message,
        }),
    }
}

fn cluster_status_to_v1beta1(status: v1beta2::KindClusterStatus) -> v1beta1::KindClusterStatus {
    let v1beta2::KindClusterStatus {
        initialization,
        failure_domains,
        conditions,
        observed_generation,
        deprecated,
    } = status;
    let deprecated = deprecated_to_v1beta1(deprecated);
    v1beta1::KindClusterStatus {
        ready: ready_from(initialization.as_ref()),
        initialization,
        failure_domains: failure_domains_to_v1beta1(failure_domains),
        conditions: deprecated.conditions,
        v1beta2: v1beta2_status_to_v1beta1(conditions),
        failure_reason: deprecated.failure_reason,
        failure_message: deprecated.failure_message,
        observed_generation,
    }
}

fn cluster_template_spec_to_v1beta2(
    spec: v1beta1::KindClusterTemplateSpec,
) -> v1beta2::KindClusterTemplateSpec {
    let v1beta1::KindClusterTemplateResource { metadata, spec } = spec.template;
    v1beta2::KindClusterTemplateSpec {
        template: v1beta2::KindClusterTemplateResource {
            metadata,
            spec: cluster_spec_to_v1beta2(spec),
        },
    }
}

fn cluster_template_spec_to_v1beta1(
    spec: v1beta2::KindClusterTemplateSpec,
) -> v1beta1::KindClusterTemplateSpec {
    let v1beta2::KindClusterTemplateResource { metadata, spec } = spec.template;
    v1beta1::KindClusterTemplateSpec {
        template: v1beta1::KindClusterTemplateResource {
            metadata,
            spec: cluster_spec_to_v1beta1(spec),
        },
    }
}

versioned!(v1beta1::KindCluster => v1beta2::KindCluster,
    spec: v1beta1::KindClusterSpec => cluster_spec_to_v1beta2,
    status: v1beta1::KindClusterStatus => cluster_status_to_v1beta2);
versioned!(v1beta2::KindCluster => v1beta1::KindCluster,
    spec: v1beta2::KindClusterSpec => cluster_spec_to_v1beta1,
    status: v1beta2::KindClusterStatus => cluster_status_to_v1beta1);
versioned!(v1beta1::KindClusterTemplate => v1beta2::KindClusterTemplate,
    spec: v1beta1::KindClusterTemplateSpec => cluster_template_spec_to_v1beta2);
versioned!(v1beta2::KindClusterTemplate => v1beta1::KindClusterTemplate,
    spec: v1beta2::KindClusterTemplateSpec => cluster_template_spec_to_v1beta1);

// ---- KindMachine and KindMachineTemplate.

fn machine_spec_to_v1beta2(spec: v1beta1::KindMachineSpec) -> v1beta2::KindMachineSpec {
    let v1beta1::KindMachineSpec {
        provider_id,
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    } = spec;
    v1beta2::KindMachineSpec {
        provider_id: provider_id_to_v1beta2(provider_id),
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    }
}

fn machine_spec_to_v1beta1(spec: v1beta2::KindMachineSpec) -> v1beta1::KindMachineSpec {
    let v1beta2::KindMachineSpec {
        provider_id,
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    } = spec;
    v1beta1::KindMachineSpec {
        provider_id: provider_id_to_v1beta1(provider_id),
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    }
}

fn machine_status_to_v1beta2(status: v1beta1::KindMachineStatus) -> v1beta2::KindMachineStatus {
    let v1beta1::KindMachineStatus {
        ready,
        initialization,
        addresses,
        failure_domain,
        conditions,
        v1beta2,
        failure_reason,
        failure_message,
        observed_generation,
    } = status;
    v1beta2::KindMachineStatus {
        initialization: initialization_to_v1beta2(ready, initialization),
        addresses,
        failure_domain,
        conditions: v1beta2_status_to_v1beta2(v1beta2),
        observed_generation,
        deprecated: deprecated_to_v1beta2(v1beta2::V1Beta1Deprecated {
            conditions,
            failure_reason,
            failure_message,
        }),
    }
}

fn machine_status_to_v1beta1(status: v1beta2::KindMachineStatus) -> v1beta1::KindMachineStatus {
    let v1beta2::KindMachineStatus {
        initialization,
        addresses,
        failure_domain,
        conditions,
        observed_generation,
        deprecated,
    } = status;
    let deprecated = deprecated_to_v1beta1(deprecated);
    v1beta1::KindMachineStatus {
        ready: ready_from(initialization.as_ref()),
        initialization,
        addresses,
        failure_domain,
        conditions: deprecated.conditions,
        v1beta2: v1beta2_status_to_v1beta1(conditions),
        failure_reason: deprecated.failure_reason,
        failure_message: deprecated.failure_message,
        observed_generation,
    }
}
fn machine_template_spec_to_v1beta2(
    spec: v1beta1::KindMachineTemplateSpec,
) -> v1beta2::KindMachineTemplateSpec {
    let v1beta1::KindMachineTemplateResource { metadata, spec } = spec.template;
    v1beta2::KindMachineTemplateSpec {
        template: v1beta2::KindMachineTemplateResource {
            metadata,
            spec: machine_spec_to_v1beta2(spec),
        },
    }
}

fn machine_template_spec_to_v1beta1(
    spec: v1beta2::KindMachineTemplateSpec,
) -> v1beta1::KindMachineTemplateSpec {
    let v1beta2::KindMachineTemplateResource { metadata, spec } = spec.template;
    v1beta1::KindMachineTemplateSpec {
        template: v1beta1::KindMachineTemplateResource {
            metadata,
            spec: machine_spec_to_v1beta1(spec),
        },
    }
}

fn machine_template_status_to_v1beta2(
    status: v1beta1::KindMachineTemplateStatus,
) -> v1beta2::KindMachineTemplateStatus {
    v1beta2::KindMachineTemplateStatus {
        capacity: status.capacity,
        node_info: status.node_info.map(|n| v1beta2::NodeInfo {
            architecture: n.architecture.map(|a| match a {
                v1beta1::Architecture::Amd64 => v1beta2::Architecture::Amd64,
                v1beta1::Architecture::Arm64 => v1beta2::Architecture::Arm64,
                v1beta1::Architecture::S390x => v1beta2::Architecture::S390x,
                v1beta1::Architecture::Ppc64le => v1beta2::Architecture::Ppc64le,
            }),
            operating_system: n.operating_system,
        }),
    }
}

fn machine_template_status_to_v1beta1(
    status: v1beta2::KindMachineTemplateStatus,
) -> v1beta1::KindMachineTemplateStatus {
    v1beta1::KindMachineTemplateStatus {
        capacity: status.capacity,
        node_info: status.node_info.map(|n| v1beta1::NodeInfo {
            architecture: n.architecture.map(|a| match a {
                v1beta2::Architecture::Amd64 => v1beta1::Architecture::Amd64,
                v1beta2::Architecture::Arm64 => v1beta1::Architecture::Arm64,
                v1beta2::Architecture::S390x => v1beta1::Architecture::S390x,
                v1beta2::Architecture::Ppc64le => v1beta1::Architecture::Ppc64le,
            }),
            operating_system: n.operating_system,
        }),
    }
}

versioned!(v1beta1::KindMachine => v1beta2::KindMachine,
    spec: v1beta1::KindMachineSpec => machine_spec_to_v1beta2,
    status: v1beta1::KindMachineStatus => machine_status_to_v1beta2);
versioned!(v1beta2::KindMachine => v1beta1::KindMachine,
    spec: v1beta2::KindMachineSpec => machine_spec_to_v1beta1,
    status: v1beta2::KindMachineStatus => machine_status_to_v1beta1);
versioned!(v1beta1::KindMachineTemplate => v1beta2::KindMachineTemplate,
    spec: v1beta1::KindMachineTemplateSpec => machine_template_spec_to_v1beta2,
    status: v1beta1::KindMachineTemplateStatus => machine_template_status_to_v1beta2);
versioned!(v1beta2::KindMachineTemplate => v1beta1::KindMachineTemplate,
    spec: v1beta2::KindMachineTemplateSpec => machine_template_spec_to_v1beta1,
    status: v1beta2::KindMachineTemplateStatus => machine_template_status_to_v1beta1);

// ---- KindMachinePool and KindMachinePoolTemplate.

fn pool_template_to_v1beta2(
    template: v1beta1::KindMachinePoolMachineTemplate,
) -> v1beta2::KindMachinePoolMachineTemplate {
    let v1beta1::KindMachinePoolMachineTemplate {
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    } = template;
    v1beta2::KindMachinePoolMachineTemplate {
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    }
}

fn pool_template_to_v1beta1(
    template: v1beta2::KindMachinePoolMachineTemplate,
) -> v1beta1::KindMachinePoolMachineTemplate {
    let v1beta2::KindMachinePoolMachineTemplate {
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    } = template;
    v1beta1::KindMachinePoolMachineTemplate {
        custom_image,
        pre_load_images,
        extra_mounts,
        bootstrap_timeout,
    }
}

fn pool_spec_to_v1beta2(spec: v1beta1::KindMachinePoolSpec) -> v1beta2::KindMachinePoolSpec {
    let v1beta1::KindMachinePoolSpec {
        provider_id,
        provider_id_list,
        template,
    } = spec;
    v1beta2::KindMachinePoolSpec {
        provider_id: provider_id_to_v1beta2(provider_id),
        provider_id_list,
        template: pool_template_to_v1beta2(template),
    }
}

fn pool_spec_to_v1beta1(spec: v1beta2::KindMachinePoolSpec) -> v1beta1::KindMachinePoolSpec {
    let v1beta2::KindMachinePoolSpec {
        provider_id,
        provider_id_list,
        template,
    } = spec;
    v1beta1::KindMachinePoolSpec {
        provider_id: provider_id_to_v1beta1(provider_id),
        provider_id_list,
        template: pool_template_to_v1beta1(template),
    }
}

fn pool_instance_to_v1beta2(
    instance: v1beta1::KindMachinePoolInstance,
) -> v1beta2::KindMachinePoolInstance {
    let v1beta1::KindMachinePoolInstance {
        instance_name,
        provider_id,
        version,
        ready,
        addresses,
    } = instance;
    v1beta2::KindMachinePoolInstance {
        instance_name,
        provider_id: provider_id_to_v1beta2(provider_id),
        version,
        ready,
        addresses,
    }
}

fn pool_instance_to_v1beta1(
    instance: v1beta2::KindMachinePoolInstance,
) -> v1beta1::KindMachinePoolInstance {
    let v1beta2::KindMachinePoolInstance {
        instance_name,
        provider_id,
        version,
        ready,
        addresses,
    } = instance;
    v1beta1::KindMachinePoolInstance {
        instance_name,
        provider_id: provider_id_to_v1beta1(provider_id),
        version,
        ready,
        addresses,
    }
}

fn pool_status_to_v1beta2(
    status: v1beta1::KindMachinePoolStatus,
) -> v1beta2::KindMachinePoolStatus {
    let v1beta1::KindMachinePoolStatus {
        ready,
        initialization,
        replicas,
        infrastructure_machine_kind,
        instances,
        conditions,
        v1beta2,
        failure_reason,
        failure_message,
        observed_generation,
    } = status;
    v1beta2::KindMachinePoolStatus {
        initialization,
        ready,
        replicas,
        infrastructure_machine_kind,
        instances: instances
            .into_iter()
            .map(pool_instance_to_v1beta2)
            .collect(),
        conditions: v1beta2_status_to_v1beta2(v1beta2),
        observed_generation,
        deprecated: deprecated_to_v1beta2(v1beta2::V1Beta1Deprecated {
            conditions,
            failure_reason,
            failure_message,
        }),
    }
}

fn pool_status_to_v1beta1(
    status: v1beta2::KindMachinePoolStatus,
) -> v1beta1::KindMachinePoolStatus {
    let v1beta2::KindMachinePoolStatus {
        initialization,
        ready,
        replicas,
        infrastructure_machine_kind,
        instances,
        conditions,
        observed_generation,
        deprecated,
    } = status;
    let deprecated = deprecated_to_v1beta1(deprecated);
    v1beta1::KindMachinePoolStatus {
        ready,
        initialization,
        replicas,
        infrastructure_machine_kind,
        instances: instances
            .into_iter()
            .map(pool_instance_to_v1beta1)
            .collect(),
        conditions: deprecated.conditions,
        v1beta2: v1beta2_status_to_v1beta1(conditions),
        failure_reason: deprecated.failure_reason,
        failure_message: deprecated.failure_message,
        observed_generation,
    }
}

fn pool_template_spec_to_v1beta2(
    spec: v1beta1::KindMachinePoolTemplateSpec,
) -> v1beta2::KindMachinePoolTemplateSpec {
    let v1beta1::KindMachinePoolTemplateResource { metadata, spec } = spec.template;
    v1beta2::KindMachinePoolTemplateSpec {
        template: v1beta2::KindMachinePoolTemplateResource {
            metadata,
            spec: pool_spec_to_v1beta2(spec),
        },
    }
}

fn pool_template_spec_to_v1beta1(
    spec: v1beta2::KindMachinePoolTemplateSpec,
) -> v1beta1::KindMachinePoolTemplateSpec {
    let v1beta2::KindMachinePoolTemplateResource { metadata, spec } = spec.template;
    v1beta1::KindMachinePoolTemplateSpec {
        template: v1beta1::KindMachinePoolTemplateResource {
            metadata,
            spec: pool_spec_to_v1beta1(spec),
        },
    }
}

versioned!(v1beta1::KindMachinePool => v1beta2::KindMachinePool,
    spec: v1beta1::KindMachinePoolSpec => pool_spec_to_v1beta2,
    status: v1beta1::KindMachinePoolStatus => pool_status_to_v1beta2);
versioned!(v1beta2::KindMachinePool => v1beta1::KindMachinePool,
    spec: v1beta2::KindMachinePoolSpec => pool_spec_to_v1beta1,
    status: v1beta2::KindMachinePoolStatus => pool_status_to_v1beta1);
versioned!(v1beta1::KindMachinePoolTemplate => v1beta2::KindMachinePoolTemplate,
    spec: v1beta1::KindMachinePoolTemplateSpec => pool_template_spec_to_v1beta2);
versioned!(v1beta2::KindMachinePoolTemplate => v1beta1::KindMachinePoolTemplate,
    spec: v1beta2::KindMachinePoolTemplateSpec => pool_template_spec_to_v1beta1);

#[cfg(test)]
mod tests {
    #[test]
    fn nulls_convert_as_absent_fields() {
        // The API server converts partial objects for managed fields with nulls in them.
        let object = serde_json::json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachine",
            "metadata": {"name": "m", "annotations": null},
            "spec": {"customImage": null, "bootstrapTimeout": "5m"},
            "status": {"conditions": null, "addresses": null, "deprecated": {"v1beta1": null}}
        });
        let down = convert(object, "infrastructure.cluster.x-k8s.io/v1beta1").expect("convert");
        assert_eq!(down["spec"], serde_json::json!({"bootstrapTimeout": "5m"}));
        assert_eq!(down["status"], serde_json::json!({"ready": false}));
    }

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
    use serde_json::json;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("c1".into()),
            namespace: Some("ns".into()),
            uid: Some("0000-1111".into()),
            resource_version: Some("42".into()),
            ..ObjectMeta::default()
        }
    }

    fn data(metadata: &ObjectMeta) -> Option<&String> {
        metadata.annotations.as_ref()?.get(DATA_ANNOTATION)
    }

    fn v1_cluster(status: v1beta1::KindClusterStatus) -> v1beta1::KindCluster {
        v1beta1::KindCluster {
            metadata: meta(),
            spec: v1beta1::KindClusterSpec::default(),
            status: Some(status),
        }
    }

    fn v2_cluster(status: v1beta2::KindClusterStatus) -> v1beta2::KindCluster {
        v1beta2::KindCluster {
            metadata: meta(),
            spec: v1beta2::KindClusterSpec::default(),
            status: Some(status),
        }
    }

    fn init(provisioned: Option<bool>) -> Option<v1beta1::Initialization> {
        Some(v1beta1::Initialization { provisioned })
    }

    fn v1_condition(type_: &str) -> v1beta1::Condition {
        v1beta1::Condition {
            type_: type_.into(),
            status: v1beta1::ConditionStatus::False,
            severity: Some(v1beta1::ConditionSeverity::Warning),
            last_transition_time: at(100),
            reason: Some("NotAvailable".into()),
            message: Some("gone".into()),
        }
    }

    fn meta_condition(type_: &str) -> MetaCondition {
        MetaCondition {
            type_: type_.into(),
            status: "True".into(),
            reason: "Available".into(),
            message: String::new(),
            observed_generation: Some(3),
            last_transition_time: at(200),
        }
    }

    /// Asserts both that `object` converts to `expected` and that it converts back to itself.
    fn assert_cluster_up(object: v1beta1::KindCluster, annotated: bool) -> v1beta2::KindCluster {
        let up = kind_cluster_to_v1beta2(object.clone());
        assert_eq!(
            data(&up.metadata).is_some(),
            annotated,
            "annotation on {up:?}"
        );
        let back = kind_cluster_to_v1beta1(up.clone());
        assert_eq!(back.into_parts(), object.into_parts());
        up
    }

    fn assert_cluster_down(object: v1beta2::KindCluster, annotated: bool) -> v1beta1::KindCluster {
        let down = kind_cluster_to_v1beta1(object.clone());
        assert_eq!(
            data(&down.metadata).is_some(),
            annotated,
            "annotation on {down:?}"
        );
        let back = kind_cluster_to_v1beta2(down.clone());
        assert_eq!(back.into_parts(), object.into_parts());
        down
    }

    #[test]
    fn ready_becomes_provisioned() {
        // (ready, v1beta1 initialization, v1beta2 initialization, annotation needed)
        let cases = [
            (false, None, None, false),
            (true, init(Some(true)), init(Some(true)), false),
            (false, init(Some(false)), init(Some(false)), false),
            (false, init(None), init(None), false),
            (true, None, init(Some(true)), true),
            (true, init(Some(false)), init(Some(true)), true),
            (false, init(Some(true)), init(Some(true)), true),
        ];
        for (ready, initialization, expected, annotated) in cases {
            let object = v1_cluster(v1beta1::KindClusterStatus {
                ready,
                initialization,
                ..Default::default()
            });
            let up = assert_cluster_up(object, annotated);
            let status = up.status.expect("status");
            assert_eq!(status.initialization, expected, "ready={ready}");
        }
    }

    #[test]
    fn provisioned_becomes_ready() {
        // (v1beta2 initialization, v1beta1 ready)
        let cases = [
            (None, false),
            (init(None), false),
            (init(Some(false)), false),
            (init(Some(true)), true),
        ];
        for (initialization, ready) in cases {
            let object = v2_cluster(v1beta2::KindClusterStatus {
                initialization: initialization.clone(),
                ..Default::default()
            });
            let down = assert_cluster_down(object, false);
            let status = down.status.expect("status");
            assert_eq!(
                (status.ready, status.initialization),
                (ready, initialization)
            );
        }
    }

    fn v1_domain(control_plane: bool, zone: Option<&str>) -> v1beta1::FailureDomainSpec {
        v1beta1::FailureDomainSpec {
            control_plane,
            attributes: zone.map(|z| BTreeMap::from([("zone".to_string(), z.to_string())])),
        }
    }

    fn v2_domain(
        name: &str,
        control_plane: Option<bool>,
        zone: Option<&str>,
    ) -> v1beta2::FailureDomain {
        v1beta2::FailureDomain {
            name: name.into(),
            control_plane,
            attributes: zone.map(|z| BTreeMap::from([("zone".to_string(), z.to_string())])),
        }
    }

    #[test]
    fn failure_domain_maps_become_sorted_lists() {
        let map = BTreeMap::from([
            ("b".to_string(), v1_domain(true, Some("east"))),
            ("a".to_string(), v1_domain(false, None)),
        ]);
        let mut object = v1_cluster(v1beta1::KindClusterStatus {
            failure_domains: Some(map.clone()),
            ..Default::default()
        });
        object.spec.failure_domains = Some(map);
        let up = assert_cluster_up(object, false);
        let expected = vec![
            v2_domain("a", Some(false), None),
            v2_domain("b", Some(true), Some("east")),
        ];
        assert_eq!(up.spec.failure_domains, expected);
        assert_eq!(up.status.expect("status").failure_domains, expected);
    }

    #[test]
    fn failure_domain_lists_become_maps() {
        // (v1beta2 list, v1beta1 map, annotation needed)
        let cases = [
            (vec![], None, false),
            (
                vec![
                    v2_domain("a", Some(true), None),
                    v2_domain("b", Some(false), Some("x")),
                ],
                Some(BTreeMap::from([
                    ("a".to_string(), v1_domain(true, None)),
                    ("b".to_string(), v1_domain(false, Some("x"))),
                ])),
                false,
            ),
            // Left out (not yet defaulted), unsorted, duplicated: v1beta1 cannot say so.
            (
                vec![v2_domain("a", None, None)],
                Some(BTreeMap::from([("a".to_string(), v1_domain(false, None))])),
                true,
            ),
            (
                vec![v2_domain("b", None, None), v2_domain("a", None, None)],
                Some(BTreeMap::from([
                    ("a".to_string(), v1_domain(false, None)),
                    ("b".to_string(), v1_domain(false, None)),
                ])),
                true,
            ),
            (
                vec![
                    v2_domain("a", Some(true), None),
                    v2_domain("a", None, Some("y")),
                ],
                Some(BTreeMap::from([(
                    "a".to_string(),
                    v1_domain(false, Some("y")),
                )])),
                true,
            ),
        ];
        for (list, map, annotated) in cases {
            let mut object = v2_cluster(v1beta2::KindClusterStatus::default());
            object.spec.failure_domains = list;
            let down = assert_cluster_down(object, annotated);
            assert_eq!(down.spec.failure_domains, map);
        }
    }

    #[test]
    fn an_empty_failure_domain_map_survives_the_round_trip() {
        let mut object = v1_cluster(v1beta1::KindClusterStatus::default());
        object.spec.failure_domains = Some(BTreeMap::new());
        let up = assert_cluster_up(object, true);
        assert_eq!(up.spec.failure_domains, vec![]);
    }

    #[test]
    fn the_port_is_always_set_in_v1beta1() {
        let endpoint = |port| v1beta2::ApiEndpoint {
            host: Some("10.0.0.1".into()),
            port,
        };
        // (v1beta2 port, v1beta1 port, annotation needed)
        for (v2_port, v1_port, annotated) in [
            (Some(6443), 6443, false),
            (Some(1), 1, false),
            (None, 6443, true),
        ] {
            let mut object = v2_cluster(v1beta2::KindClusterStatus::default());
            object.spec.control_plane_endpoint = Some(endpoint(v2_port));
            let down = assert_cluster_down(object, annotated);
            let expected = v1beta1::ApiEndpoint {
                host: Some("10.0.0.1".into()),
                port: v1_port,
            };
            assert_eq!(down.spec.control_plane_endpoint, Some(expected));
        }
    }

    #[test]
    fn v1beta1_conditions_and_failures_move_under_deprecated() {
        let object = v1_cluster(v1beta1::KindClusterStatus {
            ready: true,
            initialization: init(Some(true)),
            conditions: vec![v1_condition("Ready")],
            v1beta2: Some(v1beta1::V1Beta2Status {
                conditions: vec![meta_condition("Ready")],
            }),
            failure_reason: Some("Broken".into()),
            failure_message: Some("it broke".into()),
            observed_generation: Some(7),
            ..Default::default()
        });
        let up = assert_cluster_up(object, false);
        let expected = v1beta2::KindClusterStatus {
            initialization: init(Some(true)),
            failure_domains: vec![],
            conditions: vec![meta_condition("Ready")],
            observed_generation: Some(7),
            deprecated: Some(v1beta2::Deprecated {
                v1beta1: Some(v1beta2::V1Beta1Deprecated {
                    conditions: vec![v1_condition("Ready")],
                    failure_reason: Some("Broken".into()),
                    failure_message: Some("it broke".into()),
                }),
            }),
        };
        assert_eq!(up.status, Some(expected));
    }

    #[test]
    fn empty_condition_holders_survive_the_round_trip() {
        let object = v1_cluster(v1beta1::KindClusterStatus {
            v1beta2: Some(v1beta1::V1Beta2Status::default()),
            ..Default::default()
        });
        let up = assert_cluster_up(object, true);
        assert_eq!(up.status.expect("status").conditions, vec![]);
        for deprecated in [
            v1beta2::Deprecated { v1beta1: None },
            v1beta2::Deprecated {
                v1beta1: Some(v1beta2::V1Beta1Deprecated::default()),
            },
        ] {
            let object = v2_cluster(v1beta2::KindClusterStatus {
                deprecated: Some(deprecated),
                ..Default::default()
            });
            let down = assert_cluster_down(object, true);
            assert_eq!(down.status.expect("status").conditions, vec![]);
        }
    }

    #[test]
    fn provider_id_unset_is_empty() {
        let machine = |provider_id: Option<&str>| v1beta1::KindMachine {
            metadata: meta(),
            spec: v1beta1::KindMachineSpec {
                provider_id: provider_id.map(String::from),
                ..Default::default()
            },
            status: None,
        };
        // (v1beta1 providerID, v1beta2 providerID, annotation needed)
        let cases = [
            (None, "", false),
            (Some("kind://c/kind/n"), "kind://c/kind/n", false),
            (Some(""), "", true),
        ];
        for (v1, v2, annotated) in cases {
            let object = machine(v1);
            let up = kind_machine_to_v1beta2(object.clone());
            assert_eq!(up.spec.provider_id, v2);
            assert_eq!(data(&up.metadata).is_some(), annotated);
            assert_eq!(
                kind_machine_to_v1beta1(up).into_parts(),
                object.into_parts()
            );
        }
        let down = kind_machine_to_v1beta1(v1beta2::KindMachine::new("m", Default::default()));
        assert_eq!(down.spec.provider_id, None);
    }

    #[test]
    fn a_pool_keeps_ready_and_initialization_and_its_instances_provider_ids() {
        let instance = |provider_id: Option<&str>| v1beta1::KindMachinePoolInstance {
            instance_name: "mp-0-abcde".into(),
            provider_id: provider_id.map(String::from),
            version: Some("v1.34.0".into()),
            ready: true,
            addresses: vec![],
        };
        // (ready, initialization, instance providerID, v1beta2 providerID, annotation needed)
        let cases = [
            (true, init(Some(true)), None, "", false),
            (
                false,
                init(Some(true)),
                Some("kind://c/kind/n"),
                "kind://c/kind/n",
                false,
            ),
            (true, None, None, "", false),
            (false, None, Some(""), "", true),
        ];
        for (ready, initialization, v1, v2, annotated) in cases {
            let object = v1beta1::KindMachinePool {
                metadata: meta(),
                spec: v1beta1::KindMachinePoolSpec {
                    provider_id: Some("kind://c/pool/mp-0".into()),
                    provider_id_list: vec!["kind://c/kind/n".into()],
                    ..Default::default()
                },
                status: Some(v1beta1::KindMachinePoolStatus {
                    ready,
                    initialization: initialization.clone(),
                    replicas: 1,
                    infrastructure_machine_kind: Some("KindMachine".into()),
                    instances: vec![instance(v1)],
                    ..Default::default()
                }),
            };
            let up = kind_machine_pool_to_v1beta2(object.clone());
            assert_eq!(data(&up.metadata).is_some(), annotated, "{up:?}");
            assert_eq!(up.spec.provider_id, "kind://c/pool/mp-0");
            let status = up.status.clone().expect("status");
            assert_eq!(
                (status.ready, status.initialization),
                (ready, initialization)
            );
            assert_eq!(status.instances[0].provider_id, v2);
            assert_eq!(
                kind_machine_pool_to_v1beta1(up).into_parts(),
                object.into_parts()
            );
        }
        let template = v1beta2::KindMachinePoolTemplate::new("t", Default::default());
        let down = kind_machine_pool_template_to_v1beta1(template.clone());
        assert_eq!(down.spec.template.spec.provider_id, None);
        assert_eq!(down.spec.template.spec.template.bootstrap_timeout, "5m");
        assert_eq!(
            kind_machine_pool_template_to_v1beta2(down).into_parts(),
            template.into_parts()
        );
    }

    #[test]
    fn the_annotation_leaves_other_metadata_as_it_was() {
        let lossy = v1beta1::KindClusterStatus {
            ready: true,
            ..Default::default()
        };
        let annotations = [
            None,
            Some(BTreeMap::new()),
            Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
        ];
        for annotations in annotations {
            let mut object = v1_cluster(lossy.clone());
            object.metadata.annotations = annotations;
            let up = assert_cluster_up(object.clone(), true);
            let mut others = up.metadata.annotations.clone().unwrap_or_default();
            others.remove(DATA_ANNOTATION);
            assert_eq!(others, object.metadata.annotations.unwrap_or_default());
            assert_eq!(up.metadata.name, object.metadata.name);
            assert_eq!(up.metadata.uid, object.metadata.uid);
        }
    }

    #[test]
    fn a_stale_annotation_is_dropped() {
        let object = v1_cluster(v1beta1::KindClusterStatus {
            ready: false,
            initialization: init(Some(true)),
            ..Default::default()
        });
        let mut up = kind_cluster_to_v1beta2(object);
        assert!(data(&up.metadata).is_some());
        // The controller writes status in v1beta2 meanwhile.
        if let Some(status) = up.status.as_mut() {
            status.observed_generation = Some(2);
        }
        let down = kind_cluster_to_v1beta1(up);
        let status = down.status.expect("status");
        assert!(status.ready, "the plain mapping, not the stale copy");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(down.metadata.annotations, None);
    }

    #[test]
    fn an_unreadable_annotation_is_dropped() {
        let mut object = v2_cluster(v1beta2::KindClusterStatus::default());
        object.metadata.annotations = Some(BTreeMap::from([
            (DATA_ANNOTATION.to_string(), "{not json".to_string()),
            ("keep".to_string(), "me".to_string()),
        ]));
        let down = kind_cluster_to_v1beta1(object);
        let expected = BTreeMap::from([("keep".to_string(), "me".to_string())]);
        assert_eq!(down.metadata.annotations, Some(expected));
    }

    #[test]
    fn templates_convert_their_template() {
        let object = v1beta1::KindMachineTemplate {
            metadata: meta(),
            spec: v1beta1::KindMachineTemplateSpec {
                template: v1beta1::KindMachineTemplateResource {
                    metadata: v1beta1::ObjectMeta {
                        labels: BTreeMap::from([("role".to_string(), "worker".to_string())]),
                        annotations: BTreeMap::new(),
                    },
                    spec: v1beta1::KindMachineSpec {
                        custom_image: Some("kindest/node:v1.34.0".into()),
                        ..Default::default()
                    },
                },
            },
            status: Some(v1beta1::KindMachineTemplateStatus::default()),
        };
        let up = kind_machine_template_to_v1beta2(object.clone());
        assert_eq!(up.spec.template.metadata, object.spec.template.metadata);
        assert_eq!(up.spec.template.spec.provider_id, "");
        assert_eq!(
            up.spec.template.spec.custom_image.as_deref(),
            Some("kindest/node:v1.34.0")
        );
        assert_eq!(up.metadata, object.metadata);
        assert_eq!(
            kind_machine_template_to_v1beta1(up).into_parts(),
            object.into_parts()
        );
        let template = v1beta2::KindClusterTemplate::new("t", Default::default());
        let down = kind_cluster_template_to_v1beta1(template.clone());
        assert_eq!(down.spec.template.spec.failure_domains, None);
        assert_eq!(
            kind_cluster_template_to_v1beta2(down).into_parts(),
            template.into_parts()
        );
    }

    const V1: &str = "infrastructure.cluster.x-k8s.io/v1beta1";
    const V2: &str = "infrastructure.cluster.x-k8s.io/v1beta2";

    #[test]
    fn json_converts_and_sets_api_version_and_kind() {
        let object = json!({
            "apiVersion": V1,
            "kind": "KindMachine",
            "metadata": {"name": "m1", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"providerID": "kind://c/kind/m1", "bootstrapTimeout": "5m"},
            "status": {
                "ready": true,
                "initialization": {"provisioned": true},
                "failureDomain": "fd1",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                "failureReason": "Broken",
            }
        });
        let expected = json!({
            "apiVersion": V2,
            "kind": "KindMachine",
            "metadata": {"name": "m1", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {"providerID": "kind://c/kind/m1", "bootstrapTimeout": "5m"},
            "status": {
                "initialization": {"provisioned": true},
                "failureDomain": "fd1",
                "deprecated": {"v1beta1": {
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}],
                    "failureReason": "Broken",
                }},
            }
        });
        let up = convert(object.clone(), V2).expect("convert up");
        assert_eq!(up, expected);
        assert_eq!(convert(up, V1).expect("convert down"), object);
    }

    #[test]
    fn json_at_the_desired_version_comes_back_unchanged() {
        for kind in Kind::ALL {
            let object = json!({"apiVersion": V2, "kind": kind.as_str(), "spec": 5, "extra": true});
            assert_eq!(convert(object.clone(), V2), Ok(object));
        }
    }

    #[test]
    fn json_errors_say_what_is_wrong() {
        let served = format!("served: {V1}, {V2}");
        let cases = [
            (
                json!(5),
                V2,
                "the object has no apiVersion string".to_string(),
            ),
            (
                json!({"apiVersion": V1}),
                V2,
                "the object has no kind string".into(),
            ),
            (
                json!({"apiVersion": "v1", "kind": "KindCluster"}),
                V2,
                format!("apiVersion \"v1\" is not served; {served}"),
            ),
            (
                json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1alpha4", "kind": "KindCluster"}),
                V2,
                format!(
                    "apiVersion \"infrastructure.cluster.x-k8s.io/v1alpha4\" is not served; {served}"
                ),
            ),
            (
                json!({"apiVersion": V1, "kind": "DockerCluster"}),
                V2,
                "kind \"DockerCluster\" is not converted here; known kinds: KindCluster, \
                 KindClusterTemplate, KindMachine, KindMachineTemplate, KindMachinePool, \
                 KindMachinePoolTemplate"
                    .into(),
            ),
            (
                json!({"apiVersion": V1, "kind": "KindCluster"}),
                "v1beta2",
                format!("cannot convert to apiVersion \"v1beta2\"; {served}"),
            ),
        ];
        for (object, desired, message) in cases {
            let error = convert(object, desired).expect_err("an error");
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn decode_errors_name_the_field_but_not_the_value() {
        let secret = "hunter2-secret";
        let object = |spec: Value, status: Value| json!({"apiVersion": V1, "kind": "KindCluster", "metadata": {}, "spec": spec, "status": status});
        // (object, path, reason)
        let cases = [
            (
                object(json!({"controlPlaneEndpoint": {"port": secret}}), json!({})),
                "spec.controlPlaneEndpoint.port",
                "invalid type: string, expected i32",
            ),
            (
                object(
                    json!({"failureDomains": {secret: {"controlPlane": secret}}}),
                    json!({}),
                ),
                "spec.failureDomains.*.controlPlane",
                "invalid type: string, expected a boolean",
            ),
            (
                object(
                    json!({}),
                    json!({"conditions": [{"type": "Ready", "status": secret, "lastTransitionTime": "2026-01-02T03:04:05Z"}]}),
                ),
                "status.conditions[0].status",
                "unknown variant, expected one of `True`, `False`, `Unknown`",
            ),
            (
                object(
                    json!({}),
                    json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": secret}]}),
                ),
                "status.conditions[0].lastTransitionTime",
                "invalid value",
            ),
            (
                object(
                    json!({}),
                    json!({"conditions": [{"status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}),
                ),
                "status.conditions[0]",
                "missing field `type`",
            ),
            (
                json!({"apiVersion": V1, "kind": "KindCluster", "metadata": {"labels": {secret: 5}}, "spec": {}}),
                "metadata.labels.*",
                "invalid type: integer, expected a string",
            ),
        ];
        for (object, path, reason) in cases {
            let error = convert(object, V2).expect_err("a decode error");
            let expected = ConversionError::Decode {
                kind: Kind::KindCluster,
                version: Version::V1Beta1,
                path: path.into(),
                reason: reason.into(),
            };
            assert_eq!(error, expected);
            assert_eq!(
                error.to_string(),
                format!("v1beta1 KindCluster does not decode at {path}: {reason}")
            );
        }
    }

    #[test]
    fn reasons_keep_the_expectation_and_drop_the_value() {
        let cases = [
            (
                "invalid type: string \"a, expected b\", expected i32",
                "invalid type: string, expected i32",
            ),
            (
                "invalid type: map, expected a string",
                "invalid type: map, expected a string",
            ),
            (
                "invalid type: null, expected a string",
                "invalid type: null, expected a string",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: integer, expected u32",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "invalid type: floating point, expected i64",
            ),
            (
                "unknown variant `Maybe`, expected `A` or `B`",
                "unknown variant, expected `A` or `B`",
            ),
            ("missing field `spec`", "missing field `spec`"),
            (
                "invalid length 3, expected a tuple of size 2",
                "invalid length 3, expected a tuple of size 2",
            ),
            ("failed to parse \"secret\" as a timestamp", "invalid value"),
        ];
        for (message, reason) in cases {
            assert_eq!(redacted_reason(message), reason, "{message}");
        }
    }
}
