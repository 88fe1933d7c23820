//! API types of cluster-api-provider-kind (capkind).
//!
//! - [`v1beta2`]: the provider's kinds in group `infrastructure.cluster.x-k8s.io`, following the
//!   Cluster API infrastructure provider contract v1beta2; the storage version.
//! - [`v1beta1`]: the same kinds in the v1beta1 contract's shape, still served.
//! - [`conversion`]: lossless conversion between the two.
//! - [`capi`]: the few fields of Cluster API's own objects (Cluster, Machine) the provider reads.
//! - [`crds`]: the CustomResourceDefinitions generated from these types.
//!
//! Types only: no I/O, no async.

pub mod capi;
pub mod conversion;
pub mod crds;
pub mod duration;
pub mod v1beta1;
pub mod v1beta2;

/// The API group of every capkind kind.
pub const GROUP: &str = "infrastructure.cluster.x-k8s.io";

/// The CAPI contract labels every CRD carries: contract version -> the CRD version for it.
pub const CONTRACT_LABELS: [(&str, &str); 2] = [
    ("cluster.x-k8s.io/v1beta1", "v1beta1"),
    ("cluster.x-k8s.io/v1beta2", "v1beta2"),
];
