//! The webhook server: conversion (`/convert`), defaulting (`/mutate-...`) and validation
//! (`/validate-...`) of the capkind kinds at v1beta2, over HTTPS on --webhook-port, on every
//! replica (the API server calls whichever pod the Service picks, leader or not).
//!
//! - [`defaults`] and [`validate`]: the rules, pure functions over the typed objects.
//! - [`admission`] and [`conversion`]: review in, review out; no HTTP.
//! - [`tls`]: the certificate files, reloaded when they change on disk.
//! - This module: the routes, the server's life (start, serve, graceful stop) and metrics.
//!
//! HTTPS is axum-server with rustls (ring): it serves the same axum routes as the probes, over
//! HTTP/1.1 and HTTP/2 (which the API server prefers), swaps the TLS configuration for new
//! connections without a restart (`RustlsConfig::reload_from_config`), and drains connections
//! on shutdown; tokio-rustls with hyper-util would mean writing that accept loop here.

pub mod admission;
pub mod conversion;
pub mod defaults;
pub mod field;
pub mod kinds;
pub mod metrics;
pub mod tls;
pub mod validate;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use kube::core::conversion::ConversionReview;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use admission::Action;
use kinds::Kind;
pub use metrics::Metrics;
use metrics::Outcome;
pub use tls::CertFiles;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen (port 0: any free port).
    pub addr: SocketAddr,
    /// The certificate and key.
    pub files: CertFiles,
    /// How often the files are looked at for a new certificate.
    pub reload_every: Duration,
    /// How long open requests may take to finish once asked to stop.
    pub shutdown_grace: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate or key did not load.
    #[error("webhook server certificate: {0}")]
    Tls(#[from] tls::TlsError),
    /// The address could not be bound.
    #[error("webhook server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// A started server.
pub struct Server {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves once it accepts connections; false when it stopped first.
    pub async fn listening(&self) -> bool {
        self.handle.listening().await.is_some()
    }

    /// Waits for it to stop (after `stop` was cancelled, and open requests finished).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Loads the certificate, binds the address, and serves until `stop` is cancelled; the
/// certificate is followed on disk meanwhile.
pub async fn start(
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Server, Error> {
    let (reloader, config) = tls::Reloader::load(settings.files.clone())?;
    let bind = |source| Error::Bind {
        addr: settings.addr,
        source,
    };
    let listener = std::net::TcpListener::bind(settings.addr).map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let rustls = RustlsConfig::from_config(config);
    let handle = Handle::new();
    let server = axum_server::from_tcp_rustls(listener, rustls.clone())
        .map_err(bind)?
        .handle(handle.clone());
    tokio::spawn(follow_certificate(
        reloader,
        rustls,
        settings.reload_every,
        metrics.clone(),
        stop.clone(),
    ));
    let grace = settings.shutdown_grace;
    tokio::spawn({
        let handle = handle.clone();
        async move {
            stop.cancelled().await;
            handle.graceful_shutdown(Some(grace));
        }
    });
    let task = tokio::spawn(server.serve(routes(metrics).into_make_service()));
    info!(%addr, cert = %settings.files.cert.display(), "serving webhooks over HTTPS");
    Ok(Server { addr, handle, task })
}

/// Looks at the certificate files every `every` and serves a new pair to new connections.
async fn follow_certificate(
    mut reloader: tls::Reloader,
    config: RustlsConfig,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match reloader.check() {
            tls::Check::Unchanged | tls::Check::Settling => {}
            tls::Check::Reloaded(new) => {
                config.reload_from_config(new);
                metrics.reload(true);
                info!(cert = %reloader.files().cert.display(), "webhook certificate reloaded");
            }
            tls::Check::Rejected(e) => {
                metrics.reload(false);
                warn!(error = %e, "the webhook certificate changed on disk but does not load; serving the previous one");
            }
        }
    }
}

/// The largest admission review: an object (the API server takes up to 3 MiB) and its old
/// version, in JSON.
const ADMISSION_BODY_LIMIT: usize = 8 << 20;
/// The largest conversion review: a list read at another version comes in one review, so this
/// is well above axum's default of 2 MiB.
const CONVERSION_BODY_LIMIT: usize = 32 << 20;

/// A route's kind and action (None for /convert), and its path as the metrics label.
#[derive(Clone)]
struct Route {
    webhook: Option<(Kind, Action)>,
    path: Arc<str>,
}

/// /convert and the defaulting and validating route of each kind.
fn routes(metrics: Arc<Metrics>) -> Router {
    let mut routes: Vec<Route> = vec![Route {
        webhook: None,
        path: "/convert".into(),
    }];
    for kind in Kind::ALL {
        for (action, path) in [
            (Action::Mutate, kinds::mutate_path(kind)),
            (Action::Validate, kinds::validate_path(kind)),
        ] {
            routes.push(Route {
                webhook: Some((kind, action)),
                path: path.into(),
            });
        }
    }
    let mut router = Router::new();
    for route in routes {
        let path = route.path.clone();
        let limit = match route.webhook {
            None => CONVERSION_BODY_LIMIT,
            Some(_) => ADMISSION_BODY_LIMIT,
        };
        let handler =
            move |State(m): State<Arc<Metrics>>, body: Bytes| handle(m, route.clone(), body);
        router = router.route(&path, post(handler).layer(DefaultBodyLimit::max(limit)));
    }
    router.with_state(metrics)
}

async fn handle(metrics: Arc<Metrics>, route: Route, body: Bytes) -> Response {
    let start = Instant::now();
    let answer = match route.webhook {
        None => convert(&body),
        Some((kind, action)) => admit(kind, action, &body),
    };
    let (outcome, response) = match answer {
        Ok((json, outcome)) => (
            outcome,
            ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        ),
        Err(message) => {
            warn!(webhook = %route.path, reason = %message, "bad webhook request");
            (
                Outcome::BadRequest,
                (StatusCode::BAD_REQUEST, message).into_response(),
            )
        }
    };
    metrics.request(&route.path, outcome, start.elapsed());
    response
}

fn convert(body: &[u8]) -> Result<(String, Outcome), String> {
    let review: ConversionReview = serde_json::from_slice(body)
        .map_err(|e| format!("cannot decode the ConversionReview: {e}"))?;
    let answer = conversion::review(review)?;
    let ok = answer
        .response
        .as_ref()
        .is_some_and(|r| r.result.is_success());
    let json = serde_json::to_string(&answer).map_err(|e| e.to_string())?;
    Ok((
        json,
        if ok {
            Outcome::Allowed
        } else {
            Outcome::Denied
        },
    ))
}

fn admit(kind: Kind, action: Action, body: &[u8]) -> Result<(String, Outcome), String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| format!("cannot decode the AdmissionReview: {e}"))?;
    let (json, outcome) = admission::answer(kind, action, review)?;
    Ok((json.to_string(), outcome))
}
