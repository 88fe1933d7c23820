//! A real kubeadm cluster built through the provider the way Cluster API builds one: core's
//! objects (test/src/core.rs), CABPK's and KCP's data (test/src/kubeadm.rs), in the order those
//! controllers produce them. Used by the real-Kubernetes tests, the quick start and the
//! benchmark.
//!
//! The order: the Cluster and KindCluster; once the load balancer has an endpoint, the cluster
//! PKI Secrets; the first control-plane machine with `kubeadm init` data; once it is
//! bootstrapped, the `<cluster>-kubeconfig` Secret, the bootstrap token in the workload cluster
//! and core's ControlPlaneInitialized; then joins (workers, more control planes).

use std::path::Path;
use std::time::Duration;

use capkind_api::v1beta2::KindMachine;
use kube::Client;
use kube::api::Api;

use crate::core::{CoreCluster, Role};
use crate::fixtures::{is_ready, kind_spec, kindmachine_until};
use crate::kubeadm::{
    BootstrapToken, ClusterConfig, ClusterPki, DEFAULT_TOKEN_TTL, NodeConfig, admin_kubeconfig,
    control_plane_join_cloud_config, init_cloud_config, server_url, store_kubeconfig,
    worker_join_cloud_config,
};
use crate::workload::Workload;

/// How long a machine may take from its Machine to a finished kubeadm (boot, init or join)
/// on 2 cores with other work running.
pub const MACHINE_TIMEOUT: Duration = Duration::from_secs(300);

/// What kubeadm 1.20 has no configuration field for and the local node image needs: Debian has
/// no CoreDNS, so its addon phase is skipped (its image check is ignored, [`node`]).
pub const INIT_ARGS: &[&str] = &["--skip-phases=addon/coredns"];

/// The KindMachineTemplate spec: the Kubernetes node image, and `preload` (images for Pods)
/// loaded into every node's containerd as `kind load` does; nothing is pulled.
pub fn machine_spec(preload: &[String]) -> serde_json::Value {
    serde_json::json!({
        "customImage": crate::docker::kube_node_image(),
        "preLoadImages": preload,
        "bootstrapTimeout": "10m",
    })
}

/// A node registration as CABPK renders a KubeadmConfig's: the name left to kubeadm (the
/// hostname, which is the container name); control planes ignore the missing CoreDNS image.
pub fn node(control_plane: bool) -> NodeConfig {
    let mut node = NodeConfig::new("unused");
    node.name = None;
    if control_plane {
        node.ignore_preflight_errors = vec!["ImagePull".into()];
    }
    node
}

/// A cluster on its way: core's objects and the kubeadm providers' state.
pub struct KubeadmCluster {
    /// Cluster API core, played.
    pub core: CoreCluster,
    /// The KindMachines of its namespace.
    pub machines: Api<KindMachine>,
    /// kubeadm's view of the cluster (endpoint, subnets).
    pub config: ClusterConfig,
    /// The cluster's certificate authorities.
    pub pki: ClusterPki,
    /// The load balancer container.
    pub lb: String,
    /// The Docker network.
    pub network: String,
    /// The join token, once the control plane is initialized.
    pub token: Option<BootstrapToken>,
    /// The admin kubeconfig, once the control plane is initialized.
    pub kubeconfig: Option<String>,
}

impl KubeadmCluster {
    /// Creates the Cluster and KindCluster `name` on `network` in `namespace`, waits for the
    /// load balancer's endpoint and stores the cluster PKI.
    pub async fn create(
        client: &Client,
        namespace: &str,
        name: &str,
        network: &str,
        preload: &[String],
    ) -> Self {
        let core = CoreCluster::create(
            client,
            namespace,
            name,
            kind_spec(network),
            machine_spec(preload),
        )
        .await
        .expect("create the Cluster and KindCluster");
        let kc = core.infrastructure_ready(MACHINE_TIMEOUT).await;
        let endpoint = kc
            .spec
            .control_plane_endpoint
            .clone()
            .expect("the KindCluster's endpoint");
        let endpoint = format!(
            "{}:{}",
            endpoint.host.clone().expect("host"),
            endpoint.port()
        );
        let pki = ClusterPki::generate().expect("cluster PKI");
        pki.store(client, namespace, name, None)
            .await
            .expect("PKI Secrets");
        Self {
            machines: Api::namespaced(client.clone(), namespace),
            config: ClusterConfig::new(name, &endpoint),
            lb: format!("{name}-lb"),
            network: network.to_string(),
            pki,
            core,
            token: None,
            kubeconfig: None,
        }
    }

    /// Waits until KindMachine `name` is ready (bootstrapped, provider ID set).
    pub async fn ready(&self, name: &str) -> KindMachine {
        kindmachine_until(
            &self.machines,
            name,
            "KindMachine ready",
            MACHINE_TIMEOUT,
            is_ready,
        )
        .await
    }

    /// The first control plane: creates it with `kubeadm init` data and waits until it is
    /// bootstrapped; then writes the kubeconfig Secret, the join token and core's
    /// ControlPlaneInitialized, as KCP, CABPK and core do. Returns its name and the workload
    /// cluster (kubeconfig written into `dir`).
    pub async fn init(&mut self, dir: &Path) -> (String, Workload) {
        let data = init_cloud_config(&self.config, &node(true), &self.pki, INIT_ARGS);
        let cp0 = self
            .core
            .add_machine(Role::ControlPlane, &data)
            .await
            .expect("first control-plane machine");
        self.ready(&cp0).await;
        let kubeconfig = admin_kubeconfig(
            &self.core.name,
            &server_url(&self.config.control_plane_endpoint),
            &self.pki.ca,
        )
        .expect("admin kubeconfig");
        store_kubeconfig(
            &self.core.client,
            &self.core.namespace,
            &self.core.name,
            &kubeconfig,
            None,
        )
        .await
        .expect("kubeconfig Secret");
        let workload = Workload::connect(dir, &kubeconfig).await;
        let token = BootstrapToken::generate();
        crate::wait::until("the bootstrap token created", MACHINE_TIMEOUT, || async {
            token
                .create(&workload.client, DEFAULT_TOKEN_TTL)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        self.core.control_plane_initialized().await;
        self.token = Some(token);
        self.kubeconfig = Some(kubeconfig);
        (cp0, workload)
    }

    /// The `kubeadm join` data of a worker, as CABPK writes it for a MachineDeployment's
    /// Machines or a MachinePool.
    pub fn worker_join_data(&self) -> String {
        let token = self.token.as_ref().expect("init first");
        worker_join_cloud_config(
            &self.config,
            &node(false),
            &self.pki.ca_cert_hash(),
            token,
            &[],
        )
    }

    /// A new worker machine with `kubeadm join` data; returns its name (not waited for).
    pub async fn add_worker(&self) -> String {
        let data = self.worker_join_data();
        self.core
            .add_machine(Role::Worker, &data)
            .await
            .expect("worker machine")
    }

    /// A new control-plane machine with `kubeadm join --control-plane` data and the cluster's
    /// certificates; returns its name (not waited for).
    pub async fn add_control_plane(&self) -> String {
        let token = self.token.as_ref().expect("init first");
        let data =
            control_plane_join_cloud_config(&self.config, &node(true), &self.pki, token, &[]);
        self.core
            .add_machine(Role::ControlPlane, &data)
            .await
            .expect("control-plane machine")
    }
}
