//! /healthz and /readyz on the health address, /metrics on the metrics address.
//!
//! /readyz waits for the caches, the election, Docker, and the webhook server (when it runs):
//! a pod is only put behind the webhook Service once it answers webhooks.

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
use crate::webhook;

/// What /readyz checks besides Docker.
#[derive(Default)]
pub struct Readiness {
    /// The running controllers' cache flags (none while standing by for leadership).
    caches: std::sync::Mutex<Vec<Arc<AtomicBool>>>,
    /// Leader election is running (as leader or as a candidate) or not used.
    pub election_ok: AtomicBool,
    /// Why the webhook server does not answer yet (None: it does, or it is off).
    webhook: std::sync::Mutex<Option<String>>,
}

impl Readiness {
    /// Makes /readyz wait for these caches.
    pub fn watch_caches(&self, flags: Vec<Arc<AtomicBool>>) {
        if let Ok(mut caches) = self.caches.lock() {
            *caches = flags;
        }
    }

    /// Records why the webhook server does not answer (None once it does).
    pub fn set_webhook(&self, problem: Option<String>) {
        if let Ok(mut w) = self.webhook.lock() {
            *w = problem;
        }
    }

    fn webhook_problem(&self) -> Option<String> {
        self.webhook.lock().ok().and_then(|w| w.clone())
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
    webhook_metrics: Arc<webhook::Metrics>,
}

/// The addresses and what they report.
pub struct Served {
    /// The address of /healthz and /readyz.
    pub health: SocketAddr,
    /// The address of /metrics (may be the same).
    pub metrics_addr: SocketAddr,
    /// What /readyz checks.
    pub ready: Arc<Readiness>,
    /// The manager's metrics.
    pub metrics: Arc<Metrics>,
    /// The webhook server's metrics, shown after the manager's.
    pub webhook_metrics: Arc<webhook::Metrics>,
}

/// Serves until `cancel`.
pub async fn serve(
    served: Served,
    docker: Engine,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let Served {
        health,
        metrics_addr,
        ready,
        metrics,
        webhook_metrics,
    } = served;
    let state = AppState {
        docker,
        ready,
        metrics,
        webhook_metrics,
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
    if let Some(problem) = s.ready.webhook_problem() {
        failures.push(format!("webhook server: {problem}"));
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
    s.metrics.encode() + &s.webhook_metrics.encode()
}
