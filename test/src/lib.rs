//! The real test environment of capkind, shared by every test suite:
//!
//! - [`ApiServer`]: etcd and a real kube-apiserver on free loopback ports, with the capkind CRDs
//!   and minimal Cluster API CRDs installed (v1beta1 as CAPI v1.10, or v1beta2 as v1.11+, or
//!   none: [`CapiCrds`]), a kubeconfig and `kube::Client`s.
//! - [`capi`]: Cluster API's objects in the shape of the version served.
//! - [`docker`]: the real Docker engine, and the locally built test images.
//! - [`names`]: names unique to this test process, so that suites can run side by side.
//! - [`registry`]: a real container registry (Debian's docker-registry) holding test images.
//! - [`certmanager`]: stand-ins for cert-manager's CRDs, for dry runs of the components.
//! - [`topology`]: a ClusterClass's variables and inline patches applied as Cluster API does;
//!   [`addons`]: a stand-in for Cluster API's ClusterResourceSet CRD.
//!
//! Nothing is skipped: when etcd, the API server, Docker or an image is missing, the test fails
//! with a message that says what is missing and how to get it.
//!
//! Cleanup does not rely on destructors (statics are never dropped and a killed process runs
//! none): every environment has a watchdog in its own session that, once this test process is
//! gone, kills etcd and the API server, removes the environment's directory, and removes the
//! Docker containers and networks whose names or labels carry this process's token.

pub mod addons;
mod apiserver;
pub mod capi;
pub mod certmanager;
pub mod clusterctl;
pub mod core;
pub mod core_pool;
pub mod docker;
pub mod fixtures;
pub mod http;
pub mod kubeadm;
pub mod kubeadm_cluster;
pub mod manager;
pub mod names;
pub mod process;
pub mod registry;
pub mod signals;
pub mod topology;
pub mod wait;
pub mod webhooks;
pub mod workload;

pub use apiserver::{
    ApiServer, CapiCrds, apply_crds, capi_crds, capi_crds_at, install_crds, install_crds_with,
    shared,
};
pub use manager::Manager;
