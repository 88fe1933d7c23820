//! The manager as an operator runs it: flags, logs, probes and metrics, leader election, the
//! controllers, and a graceful shutdown on SIGTERM or SIGINT.
//!
//! Shutdown: stop taking work, let in-flight reconciles finish (bounded by --shutdown-timeout),
//! release the Lease, exit 0. Losing the Lease instead stops the controllers at once and exits
//! non-zero, as controller-runtime does, so that a restarted pod campaigns again.

pub mod flags;
mod http;
pub mod leader;
mod telemetry;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::controllers::{Context, Scope, kindcluster, kindmachine};
use crate::docker::{Engine, Instrumented};
use crate::metrics::Metrics;
pub use flags::Flags;

/// Why the manager stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("Kubernetes configuration: {0}")]
    Config(String),
    /// An address could not be served.
    #[error("serving probes and metrics: {0}")]
    Http(#[from] std::io::Error),
    /// Leadership was lost.
    #[error(transparent)]
    Lost(#[from] leader::Lost),
}

/// Runs the manager until SIGTERM or SIGINT (Ok) or until it loses leadership (Err).
pub async fn run(flags: Flags) -> Result<(), Error> {
    telemetry::init(flags.log_format, flags.verbosity);
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let metrics = Arc::new(Metrics::new());
    let client = kube_client(&flags, &metrics).await?;
    let Some(docker) = connect_docker(&flags.docker_host, &cancel).await else {
        return Ok(());
    };
    let readiness = Arc::new(http::Readiness::default());
    readiness.election_ok.store(true, Ordering::Relaxed);
    let server = tokio::spawn(http::serve(
        flags.health_addr,
        flags.metrics_addr,
        docker.clone(),
        readiness.clone(),
        metrics.clone(),
        cancel.clone(),
    ));

    let (leading_tx, mut leading) = tokio::sync::watch::channel(!flags.leader_elect);
    // Without leader election the sender stays here, so that leadership never "ends".
    let (election, _always_leading) = if flags.leader_elect {
        let settings = leader_settings(&flags);
        info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "campaigning for leadership");
        (
            Some(tokio::spawn(leader::run(
                client.clone(),
                settings,
                leading_tx,
                cancel.child_token(),
            ))),
            None,
        )
    } else {
        (None, Some(leading_tx))
    };
    if leading.wait_for(|l| *l).await.is_err() || cancel.is_cancelled() {
        return finish(election, server).await;
    }
    metrics.leader.set(1);

    let docker = Instrumented::new(docker, metrics.clone());
    let context = |name: &str| {
        Context::new(client.clone(), docker.clone(), name, flags.sync_period)
            .with_metrics(metrics.clone())
            .with_default_network(flags.docker_network.clone())
            .with_node_privileges(flags.node_privileges)
    };
    let (clusters, machines) = (
        Arc::new(context("kindcluster")),
        Arc::new(context("kindmachine")),
    );
    readiness.watch_caches(vec![
        clusters.cache_synced.clone(),
        machines.cache_synced.clone(),
    ]);
    let scope = Scope {
        namespace: (!flags.namespace.is_empty()).then(|| flags.namespace.clone()),
        watch_filter: (!flags.watch_filter.is_empty()).then(|| flags.watch_filter.clone()),
    };
    let stop = CancellationToken::new();
    let controllers = async {
        tokio::join!(
            kindcluster::run(
                clusters,
                scope.clone(),
                flags.kindcluster_concurrency,
                stop.clone().cancelled_owned()
            ),
            kindmachine::run(
                machines,
                scope.clone(),
                flags.kindmachine_concurrency,
                stop.clone().cancelled_owned()
            ),
        )
    };
    tokio::pin!(controllers);
    info!(version = env!("CARGO_PKG_VERSION"), "controllers started");
    tokio::select! {
        _ = &mut controllers => {}
        _ = cancel.cancelled() => {
            info!(timeout = ?flags.shutdown_timeout, "shutting down: finishing in-flight reconciles");
            stop.cancel();
            if tokio::time::timeout(flags.shutdown_timeout, &mut controllers).await.is_err() {
                warn!("in-flight reconciles did not finish in time; stopping them");
            }
        }
        _ = leading.wait_for(|l| !*l) => {
            error!("lost leadership; stopping at once");
            metrics.leader.set(0);
            return match election {
                Some(e) => Err(e.await.map_err(|e| Error::Config(e.to_string()))?.err().map_or(Error::Config("leadership ended".into()), Error::Lost)),
                None => Ok(()),
            };
        }
    }
    metrics.leader.set(0);
    finish(election, server).await
}

/// Waits for the election to release the Lease and the HTTP servers to stop.
async fn finish(
    election: Option<tokio::task::JoinHandle<Result<(), leader::Lost>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
) -> Result<(), Error> {
    if let Some(e) = election {
        let _ = tokio::time::timeout(Duration::from_secs(10), e).await;
    }
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => Err(Error::Http(e)),
        _ => {
            info!("stopped");
            Ok(())
        }
    }
}

fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
        }
        cancel.cancel();
    });
}

/// A client with the API rate limit of --kube-api-qps and --kube-api-burst, its requests
/// counted in the metrics.
async fn kube_client(flags: &Flags, metrics: &Arc<Metrics>) -> Result<Client, Error> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let burst = u64::from(flags.kube_api_burst);
    let window =
        Duration::from_secs_f64(f64::from(flags.kube_api_burst) / f64::from(flags.kube_api_qps));
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
    Ok(builder
        .with_layer(&tower::limit::RateLimitLayer::new(burst, window))
        .with_layer(&crate::metrics::ApiRequestsLayer(metrics.clone()))
        .build())
}

/// Connects to Docker, retrying until it answers; None when shut down first.
async fn connect_docker(host: &str, cancel: &CancellationToken) -> Option<Engine> {
    let mut delay = Duration::from_secs(1);
    loop {
        match Engine::connect(Some(host)).await {
            Ok(engine) => return Some(engine),
            Err(e) => warn!(error = %e, retry_in = ?delay, "the Docker engine does not answer yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

fn leader_settings(flags: &Flags) -> leader::Settings {
    let namespace = if !flags.leader_election_namespace.is_empty() {
        flags.leader_election_namespace.clone()
    } else if let Ok(ns) =
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    {
        ns.trim().to_string()
    } else if !flags.namespace.is_empty() {
        flags.namespace.clone()
    } else {
        "default".to_string()
    };
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()))
        .unwrap_or_else(|_| "capkind".into());
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    leader::Settings {
        name: flags.leader_election_id.clone(),
        namespace,
        identity: format!("{host}_{}_{unique:08x}", std::process::id()),
        lease_duration: flags.leader_elect_lease_duration,
        renew_deadline: flags.leader_elect_renew_deadline,
        retry_period: flags.leader_elect_retry_period,
    }
}
