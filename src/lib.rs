//! cluster-api-provider-kind (capkind): the manager's library.
//!
//! - [`docker`]: the container engine, behind the [`docker::ContainerRuntime`] trait.
//! - [`webhook`]: the conversion, defaulting and validating webhooks, served over HTTPS.

pub mod bootstrap;
pub mod capi;
pub mod controllers;
pub mod docker;
pub mod loadbalancer;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod report;
pub mod webhook;
pub mod workload;
