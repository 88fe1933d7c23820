//! The manager as an operator runs it: flags, logs, probes and metrics, leader election, the
//! controllers, and a graceful shutdown on SIGTERM or SIGINT.
//!
//! The webhook server starts first and on every replica, leader or not: the API server needs
//! /convert to read the provider's objects at all, and calls whichever pod the Service picks.
//!
//! Shutdown: stop taking work, let in-flight reconciles finish (bounded by --shutdown-timeout),
//! release the Lease, stop the webhook server last (the reconciles' own writes pass through
//! it), exit 0. Losing the Lease instead stops the controllers at once and exits
//! non-zero, as controller-runtime does, so that a restarted pod campaigns again.

pub mod discovery;
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

use crate::controllers::{
    Context, Scope, kindcluster, kindmachine, kindmachinepool, kindmachinetemplate,
};
use crate::docker::{Engine, Instrumented};
use crate::metrics::Metrics;
use crate::webhook;
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
    /// The webhook server could not start.
    #[error(transparent)]
    Webhook(#[from] webhook::Error),
    /// Cluster API is not installed.
    #[error(transparent)]
    Capi(#[from] discovery::Error),
}

/// Runs the manager until SIGTERM or SIGINT (Ok) or until it loses leadership (Err).
pub async fn run(flags: Flags) -> Result<(), Error> {
    telemetry::init(flags.log_format, flags.verbosity);
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let metrics = Arc::new(Metrics::new());
    let webhook_metrics = Arc::new(webhook::Metrics::new());
    let readiness = Arc::new(http::Readiness::default());
    let webhooks = start_webhooks(&flags, &webhook_metrics, &readiness).await?;
    let client = kube_client(&flags, &metrics).await?;
    let Some(capi) = discovery::capi_version(&client, &cancel).await? else {
        stop_webhooks(webhooks).await;
        return Ok(());
    };
    let Some(docker) = connect_docker(&flags.docker_host, &cancel).await else {
        stop_webhooks(webhooks).await;
        return Ok(());
    };
    readiness.election_ok.store(true, Ordering::Relaxed);
    let served = http::Served {
        health: flags.health_addr,
        metrics_addr: flags.metrics_addr,
        ready: readiness.clone(),
        metrics: metrics.clone(),
        webhook_metrics,
    };
    let server = tokio::spawn(http::serve(served, docker.clone(), cancel.clone()));

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
        return finish(election, server, webhooks).await;
    }
    metrics.leader.set(1);

    let docker = Instrumented::new(docker, metrics.clone());
    let docker_config = flags.docker_config_path();
    info!(docker_config = ?docker_config, "registry credentials for pulls come from this Docker configuration, when it exists");
    let pulls = Arc::new(crate::controllers::images::Pulls::new(docker_config));
    let context = |name: &str| {
        Context::new(client.clone(), docker.clone(), name, flags.sync_period)
            .with_metrics(metrics.clone())
            .with_default_network(flags.docker_network.clone())
            .with_capi(capi)
            .with_images(pulls.clone())
    };
    let (clusters, machines, templates) = (
        Arc::new(context("kindcluster")),
        Arc::new(context("kindmachine")),
        Arc::new(context("kindmachinetemplate")),
    );
    let pools = match discovery::serves_machine_pools(&client, capi).await {
        Ok(true) => Some(Arc::new(context("kindmachinepool"))),
        Ok(false) => {
            info!(
                "Cluster API serves no MachinePool (its MachinePool feature is off): KindMachinePools are not reconciled"
            );
            None
        }
        Err(e) => {
            warn!(error = %e, "cannot tell whether Cluster API serves MachinePool: KindMachinePools are not reconciled");
            None
        }
    };
    let mut caches = vec![
        clusters.cache_synced.clone(),
        machines.cache_synced.clone(),
        templates.cache_synced.clone(),
    ];
    caches.extend(pools.iter().map(|p| p.cache_synced.clone()));
    readiness.watch_caches(caches);
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
                flags.node_privileges,
                scope.clone(),
                flags.kindmachine_concurrency,
                flags.node_start_concurrency,
                stop.clone().cancelled_owned()
            ),
            kindmachinetemplate::run(templates, scope.clone(), stop.clone().cancelled_owned()),
            async {
                if let Some(pools) = pools {
                    kindmachinepool::run(
                        pools,
                        scope.clone(),
                        flags.kindmachinepool_concurrency,
                        stop.clone().cancelled_owned(),
                    )
                    .await;
                }
            },
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
    finish(election, server, webhooks).await
}

/// Waits for the election to release the Lease, then stops the webhook server, and waits for
/// the HTTP servers to stop.
async fn finish(
    election: Option<tokio::task::JoinHandle<Result<(), leader::Lost>>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    webhooks: Option<Webhooks>,
) -> Result<(), Error> {
    if let Some(e) = election {
        let _ = tokio::time::timeout(Duration::from_secs(10), e).await;
    }
    stop_webhooks(webhooks).await;
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => Err(Error::Http(e)),
        _ => {
            info!("stopped");
            Ok(())
        }
    }
}

/// The running webhook server: stopped with `stop`, its end reported by `task`.
struct Webhooks {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How long open webhook requests may take to finish at shutdown (they take milliseconds).
const WEBHOOK_GRACE: Duration = Duration::from_secs(5);

/// Starts the webhook server unless --webhook-port=0; /readyz says "not listening" until it
/// accepts connections, and why it stopped if it does.
async fn start_webhooks(
    flags: &Flags,
    metrics: &Arc<webhook::Metrics>,
    readiness: &Arc<http::Readiness>,
) -> Result<Option<Webhooks>, Error> {
    let (Some(addr), Some(files)) = (flags.webhook_addr(), flags.webhook_files()) else {
        info!("webhook server off (--webhook-port=0)");
        return Ok(None);
    };
    readiness.set_webhook(Some(format!("not listening on {addr} yet")));
    let settings = webhook::Settings {
        addr,
        files,
        reload_every: Duration::from_secs(5),
        shutdown_grace: WEBHOOK_GRACE,
    };
    let stop = CancellationToken::new();
    let server = webhook::start(settings, metrics.clone(), stop.clone()).await?;
    let readiness = readiness.clone();
    let task = tokio::spawn(async move {
        if server.listening().await {
            readiness.set_webhook(None);
        }
        let result = server.wait().await;
        let why = match &result {
            Ok(()) => "stopped".to_string(),
            Err(e) => {
                error!(error = %e, "the webhook server stopped");
                format!("stopped: {e}")
            }
        };
        readiness.set_webhook(Some(why));
        result
    });
    Ok(Some(Webhooks { stop, task }))
}

/// Stops the webhook server, letting open requests finish.
async fn stop_webhooks(webhooks: Option<Webhooks>) {
    if let Some(w) = webhooks {
        w.stop.cancel();
        let _ = tokio::time::timeout(WEBHOOK_GRACE + Duration::from_secs(1), w.task).await;
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
