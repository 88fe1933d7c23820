//! The provider's controllers running inside the test process, scoped to one namespace.
//! Dropping or killing a [`Manager`] aborts it wherever it is, as a killed process would stop.

use std::sync::Arc;
use std::time::Duration;

use capkind::controllers::{Context, kindcluster, kindmachine};
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
        let ctx = Arc::new(Context::new(
            client,
            docker,
            "kindcluster",
            Duration::from_secs(600),
        ));
        let ns = namespace.to_string();
        let handle = tokio::spawn(async move {
            kindcluster::run(ctx, Some(&ns), 4, std::future::pending()).await;
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
