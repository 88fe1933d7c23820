//! /healthz and /readyz on the health address, /metrics on the metrics address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::docker::{ContainerRuntime, Engine};
use crate::metrics::Metrics;

/// What /readyz checks besides Docker.
#[derive(Default)]
pub struct Readiness {
    /// The running controllers' cache flags (none while standing by for leadership).
    caches: std::sync::Mutex<Vec<Arc<AtomicBool>>>,
    /// Leader election is running (as leader or as a candidate) or not used.
    pub election_ok: AtomicBool,
}

impl Readiness {
    /// Makes /readyz wait for these caches.
    pub fn watch_caches(&self, flags: Vec<Arc<AtomicBool>>) {
        if let Ok(mut caches) = self.caches.lock() {
            *caches = flags;
        }
    }

    fn caches_synced(&self) -> bool {
        self.caches
            .lock()
            .is_ok_and(|c| c.iter().all(|f| f.load(Ordering::Relaxed)))
    }
}

#[derive(Clone)]
struct AppState {
    docker: Engine,
    ready: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

/// Serves until `cancel`; the two addresses may be the same.
pub async fn serve(
    health: SocketAddr,
    metrics_addr: SocketAddr,
    docker: Engine,
    ready: Arc<Readiness>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let state = AppState {
        docker,
        ready,
        metrics,
    };
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    let metrics_routes = Router::new().route("/metrics", get(metrics_text));
    let mut servers = Vec::new();
    if health == metrics_addr {
        servers.push((health, probes.merge(metrics_routes).with_state(state)));
    } else {
        servers.push((health, probes.with_state(state.clone())));
        servers.push((metrics_addr, metrics_routes.with_state(state)));
    }
    let mut tasks = Vec::new();
    for (addr, router) in servers {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "serving HTTP");
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        }));
    }
    for task in tasks {
        task.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    let mut failures = Vec::new();
    if !s.ready.caches_synced() {
        failures.push("caches: not synced yet".to_string());
    }
    if !s.ready.election_ok.load(Ordering::Relaxed) {
        failures.push("leader election: not running".to_string());
    }
    match tokio::time::timeout(Duration::from_secs(2), s.docker.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failures.push(format!("docker: {e}")),
        Err(_) => failures.push("docker: no answer within 2s".to_string()),
    }
    if failures.is_empty() {
        (StatusCode::OK, "ok".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            failures.iter().map(|f| format!("[-] {f}\n")).collect(),
        )
    }
}

async fn metrics_text(State(s): State<AppState>) -> String {
    s.metrics.encode()
}
