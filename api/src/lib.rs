//! API types of cluster-api-provider-kind (capkind).
//!
//! - [`v1beta1`]: the provider's CRDs in group `infrastructure.cluster.x-k8s.io`, following the
//!   Cluster API infrastructure provider contract v1beta1.
//! - [`capi`]: the few fields of Cluster API's own objects (Cluster, Machine) the provider reads.
//! - [`crds`]: the CustomResourceDefinitions generated from these types.
//!
//! Types only: no I/O, no async.

pub mod capi;
pub mod crds;
pub mod duration;
pub mod v1beta1;

/// The API group of every capkind kind.
pub const GROUP: &str = "infrastructure.cluster.x-k8s.io";

/// The CAPI contract label every CRD carries: contract version -> served CRD versions.
pub const CONTRACT_LABEL: (&str, &str) = ("cluster.x-k8s.io/v1beta1", "v1beta1");
