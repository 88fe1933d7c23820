//! The parts of Cluster API's own objects (group `cluster.x-k8s.io`, version v1beta1) that the
//! provider reads. Read-only shims: unknown fields are ignored and nothing here is written back
//! except by tests that play Cluster API core.

mod cluster;
mod machine;

pub use cluster::*;
pub use machine::*;

/// The Cluster API core group.
pub const GROUP: &str = "cluster.x-k8s.io";

/// Label with the name of the Cluster an object belongs to.
pub const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
/// Label present on control-plane Machines.
pub const CONTROL_PLANE_LABEL: &str = "cluster.x-k8s.io/control-plane";
/// Annotation that pauses reconciliation of one object.
pub const PAUSED_ANNOTATION: &str = "cluster.x-k8s.io/paused";
/// Annotation that hands an infrastructure object to an external system.
pub const MANAGED_BY_ANNOTATION: &str = "cluster.x-k8s.io/managed-by";
/// Label that selects which manager instance watches an object.
pub const WATCH_FILTER_LABEL: &str = "cluster.x-k8s.io/watch-filter";
