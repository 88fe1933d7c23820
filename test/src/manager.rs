//! The provider's controllers running inside the test process, scoped to one namespace.
//! Dropping or killing a [`Manager`] aborts it wherever it is, as a killed process would stop.

use std::sync::Arc;
use std::time::Duration;

use capkind::controllers::{Context, Scope, kindcluster, kindmachine};
use capkind::node::Privileges;
use kube::Client;
use tokio::task::JoinHandle;

/// A running set of controllers.
pub struct Manager {
    handle: JoinHandle<()>,
}

impl Manager {
    /// Starts the controllers for `namespace`.
    pub async fn start(client: Client, namespace: &str) -> Self {
        let docker = crate::docker::engine().await;
        let sync = Duration::from_secs(600);
        let clusters = Arc::new(Context::new(
            client.clone(),
            docker.clone(),
            "kindcluster",
            sync,
        ));
        // This engine refuses --privileged (docs/docker-engine.md).
        let machines = Arc::new(
            Context::new(client, docker, "kindmachine", sync)
                .with_node_privileges(Privileges::Capabilities),
        );
        let scope = Scope {
            namespace: Some(namespace.to_string()),
            watch_filter: None,
        };
        let handle = tokio::spawn(async move {
            tokio::join!(
                kindcluster::run(clusters, scope.clone(), 4, std::future::pending()),
                kindmachine::run(machines, scope, 8, std::future::pending()),
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
