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
    /// How many KindMachines are reconciled at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    kindmachine_concurrency: u16,
    /// How node containers get their rights: privileged (as kind and CAPD) or capabilities
    /// (for engines that refuse --privileged; see docs/docker-engine.md).
    #[arg(long, env = "CAPKIND_NODE_PRIVILEGES", value_enum, default_value_t = capkind::node::Privileges::Privileged)]
    node_privileges: capkind::node::Privileges,
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
    let namespace = (!flags.namespace.is_empty()).then_some(flags.namespace.as_str());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        let _ = stop.send(true);
    });
    use capkind::controllers::{Context, kindcluster, kindmachine};
    let clusters = Arc::new(Context::new(
        client.clone(),
        docker.clone(),
        "kindcluster",
        flags.sync_period,
    ));
    let machines = Arc::new(
        Context::new(client, docker, "kindmachine", flags.sync_period)
            .with_node_privileges(flags.node_privileges),
    );
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "capkind manager starting"
    );
    tokio::join!(
        kindcluster::run(
            clusters,
            namespace,
            flags.kindcluster_concurrency,
            shutdown()
        ),
        kindmachine::run(
            machines,
            namespace,
            flags.kindmachine_concurrency,
            shutdown()
        ),
    );
    Ok(())
}
