//! A [`ContainerRuntime`] that counts and times every call of another one.

use std::sync::Arc;
use std::time::Instant;

use futures::stream::BoxStream;
use tokio::sync::Semaphore;

use super::{
    Container, ContainerEvent, ContainerRuntime, ContainerSpec, ExecOutput, HostInfo, Network,
    RegistryAuth, Result,
};
use crate::metrics::Metrics;

/// How many of the short requests (everything but execs, image pulls and loads, and event
/// streams) are in flight at once. The engine works them off a few at a time anyway, so more
/// only wait inside it, each on a connection of its own (the client keeps none open): at 100
/// machines being made, close to 300 sockets and most of the manager's heap (issue 18).
pub const SHORT_REQUESTS_IN_FLIGHT: usize = 32;

/// Wraps a runtime with metrics per operation.
#[derive(Clone)]
pub struct Instrumented<D> {
    inner: D,
    metrics: Arc<Metrics>,
    short: Arc<Semaphore>,
}

impl<D> Instrumented<D> {
    /// Counts the calls made through `inner` in `metrics`.
    pub fn new(inner: D, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            metrics,
            short: Arc::new(Semaphore::new(SHORT_REQUESTS_IN_FLIGHT)),
        }
    }

    /// A short request: it waits for one of [`SHORT_REQUESTS_IN_FLIGHT`] places first (the
    /// time it waits is not Docker's and is not in its latency). Each call holds one place
    /// and calls no other through this wrapper, so the places cannot run out in a cycle.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        // The semaphore is never closed; were it, the call would go ahead unlimited.
        let _place = self.short.acquire().await.ok();
        self.long(op, call).await
    }

    /// A request that may last as long as what it runs (an exec, a pull): never limited, so
    /// that a hundred bootstraps being waited for hold up no inspect.
    async fn long<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        self.metrics.docker(op, result.is_ok(), start);
        result
    }
}

impl<D: ContainerRuntime> ContainerRuntime for Instrumented<D> {
    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn host(&self) -> Result<HostInfo> {
        self.timed("info", self.inner.host()).await
    }
    async fn image_exists(&self, image: &str) -> Result<bool> {
        self.timed("inspect_image", self.inner.image_exists(image))
            .await
    }
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<()> {
        self.long("pull_image", self.inner.pull_image(image, auth))
            .await
    }
    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>> {
        self.timed("inspect_image", self.inner.image_command(image))
            .await
    }
    async fn ensure_network(&self, name: &str) -> Result<Network> {
        self.timed("ensure_network", self.inner.ensure_network(name))
            .await
    }
    async fn remove_network(&self, name: &str) -> Result<bool> {
        self.timed("remove_network", self.inner.remove_network(name))
            .await
    }
    async fn free_address(&self, network: &str) -> Result<Option<String>> {
        self.timed("free_address", self.inner.free_address(network))
            .await
    }
    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String> {
        self.timed("logs", self.inner.logs_tail(name, lines)).await
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.timed("create", self.inner.create(spec)).await
    }
    async fn start(&self, name: &str) -> Result<()> {
        self.timed("start", self.inner.start(name)).await
    }
    async fn inspect(&self, name: &str) -> Result<Option<Container>> {
        self.timed("inspect", self.inner.inspect(name)).await
    }
    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        self.timed("list", self.inner.list(labels)).await
    }
    async fn remove(&self, name: &str) -> Result<()> {
        self.timed("remove", self.inner.remove(name)).await
    }
    async fn exec(&self, name: &str, cmd: &[&str], stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        self.long("exec", self.inner.exec(name, cmd, stdin)).await
    }
    async fn pipe_image(&self, image: &str, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
        self.long("load_image", self.inner.pipe_image(image, container, cmd))
            .await
    }
    async fn upload(&self, name: &str, path: &str, tar: Vec<u8>) -> Result<()> {
        self.timed("upload", self.inner.upload(name, path, tar))
            .await
    }
    fn container_events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<ContainerEvent>> {
        self.inner.container_events(labels)
    }
    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.timed("kill", self.inner.kill(name, signal)).await
    }
}
