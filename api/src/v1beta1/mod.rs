//! Version v1beta1 of the capkind API (Cluster API contract v1beta1).

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
