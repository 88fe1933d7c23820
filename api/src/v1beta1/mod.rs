//! Version v1beta1 of the capkind API (Cluster API contract v1beta1).

mod common;
mod kindcluster;
mod kindclustertemplate;
mod kindmachine;
mod kindmachinetemplate;

pub use common::*;
pub use kindcluster::*;
pub use kindclustertemplate::*;
pub use kindmachine::*;
pub use kindmachinetemplate::*;
