//! Version v1beta2 of the capkind API (Cluster API contract v1beta2), the storage version.
//!
//! Shaped by the v1beta2 contract: `status.initialization.provisioned`, `status.conditions` as
//! metav1 Conditions, the v1beta1 conditions and failure fields under
//! `status.deprecated.v1beta1`, failure domains as a list and `spec.providerID` a string.
//! [`crate::conversion`] converts to and from [`crate::v1beta1`] without loss.

mod common;
mod kindcluster;
mod kindclustertemplate;
mod kindmachine;
mod kindmachinepool;
mod kindmachinepooltemplate;
mod kindmachinetemplate;

pub use common::*;
pub use kindcluster::*;
pub use kindclustertemplate::*;
pub use kindmachine::*;
pub use kindmachinepool::*;
pub use kindmachinepooltemplate::*;
pub use kindmachinetemplate::*;
