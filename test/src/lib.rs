//! The real test environment of capkind, shared by every test suite:
//!
//! - [`ApiServer`]: etcd and a real kube-apiserver on free loopback ports, with the capkind CRDs
//!   and minimal Cluster API CRDs installed, a kubeconfig and `kube::Client`s.
//! - [`docker`]: the real Docker engine, and the locally built test images.
//! - [`names`]: names unique to this test process, so that suites can run side by side.
//!
//! Nothing is skipped: when etcd, the API server, Docker or an image is missing, the test fails
//! with a message that says what is missing and how to get it.
//!
//! Cleanup does not rely on destructors (statics are never dropped and a killed process runs
//! none): every environment has a watchdog in its own session that, once this test process is
//! gone, kills etcd and the API server, removes the environment's directory, and removes the
//! Docker containers and networks whose names or labels carry this process's token.

mod apiserver;
pub mod clusterctl;
pub mod core;
pub mod docker;
pub mod fixtures;
pub mod http;
pub mod kubeadm;
pub mod kubeadm_cluster;
pub mod manager;
pub mod names;
pub mod process;
pub mod signals;
pub mod wait;
pub mod workload;

pub use apiserver::{ApiServer, capi_crds, install_crds, shared};
pub use manager::Manager;
