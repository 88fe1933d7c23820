//! The provider's controllers running inside the test process, scoped to one namespace.
//! Dropping or killing a [`Manager`] aborts it wherever it is, as a killed process would stop.

use std::sync::Arc;
use std::time::Duration;

use capkind::controllers::{Context, Scope, kindcluster, kindmachine, kindmachinepool};
use capkind::node::Privileges;
use kube::Client;
use tokio::task::JoinHandle;

/// A running set of controllers.
pub struct Manager {
    handle: JoinHandle<()>,
}

impl Manager {
    /// Starts the controllers for `namespace`, reading Cluster API's objects through the
    /// version served, as the manager does.
    pub async fn start(client: Client, namespace: &str) -> Self {
        let docker = crate::docker::engine().await;
        let sync = Duration::from_secs(600);
        let capi = crate::capi::served(&client).await;
        let clusters = Arc::new(
            Context::new(client.clone(), docker.clone(), "kindcluster", sync).with_capi(capi),
        );
        let machines = Arc::new(
            Context::new(client.clone(), docker.clone(), "kindmachine", sync).with_capi(capi),
        );
        // As the manager does: the pool controller only where Cluster API serves MachinePool.
        let pools = capkind::manager::discovery::serves_machine_pools(&client, capi)
            .await
            .unwrap_or(false)
            .then(|| {
                Arc::new(Context::new(client, docker, "kindmachinepool", sync).with_capi(capi))
            });
        let scope = Scope {
            namespace: Some(namespace.to_string()),
            watch_filter: None,
        };
        let handle = tokio::spawn(async move {
            tokio::join!(
                kindcluster::run(clusters, scope.clone(), 4, std::future::pending()),
                // This engine refuses --privileged (docs/docker-engine.md).
                kindmachine::run(
                    machines,
                    Privileges::Capabilities,
                    scope.clone(),
                    8,
                    0,
                    std::future::pending()
                ),
                async {
                    if let Some(pools) = pools {
                        kindmachinepool::run(pools, scope, 4, std::future::pending()).await;
                    }
                },
            );
        });
        Self { handle }
    }

    /// Stops the controllers at whatever point they are.
    pub fn kill(self) {
        self.handle.abort();
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
