//! The capkind manager: runs the provider's controllers against the management cluster in
//! KUBECONFIG (or the in-cluster configuration) and the Docker engine in DOCKER_HOST.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

/// cluster-api-provider-kind: Cluster API infrastructure from Docker containers, as kind does.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Flags {
    /// Watch only this namespace (all namespaces when empty).
    #[arg(long, env = "CAPKIND_NAMESPACE", default_value = "")]
    namespace: String,
    /// The Docker engine to use (unix:///var/run/docker.sock, tcp://...); DOCKER_HOST when empty.
    #[arg(long, env = "DOCKER_HOST", default_value = "")]
    docker_host: String,
    /// How many KindClusters are reconciled at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    kindcluster_concurrency: u16,
    /// How often healthy objects are looked at again without a change, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    sync_period: Duration,
    /// Log filter (tracing EnvFilter syntax), e.g. info or capkind=debug.
    #[arg(long, env = "CAPKIND_LOG", default_value = "info")]
    log: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    capkind_api::duration::parse(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log))
        .init();
    let client = kube::Client::try_default().await?;
    let docker = capkind::docker::Engine::connect(Some(&flags.docker_host)).await?;
    let ctx = Arc::new(capkind::controllers::Context::new(
        client,
        docker,
        "kindcluster",
        flags.sync_period,
    ));
    let namespace = (!flags.namespace.is_empty()).then_some(flags.namespace.as_str());
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "capkind manager starting"
    );
    capkind::controllers::kindcluster::run(ctx, namespace, flags.kindcluster_concurrency, shutdown)
        .await;
    Ok(())
}
