//! Prometheus metrics. Reconcile metrics carry controller-runtime's names so Cluster API's
//! dashboards work; `capkind_*` metrics cover Docker, bootstraps and machines. Labels are bounded
//! (controller, result, reason, Docker operation, phase), never object names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The manager's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    errors_by_reason: IntCounterVec,
    reconcile_time: HistogramVec,
    active_workers: IntGaugeVec,
    max_workers: IntGaugeVec,
    docker_requests: IntCounterVec,
    api_requests: IntCounterVec,
    api_rate_limited: prometheus::Counter,
    docker_time: HistogramVec,
    bootstrap_time: Histogram,
    events_refused: IntCounterVec,
    machines: IntGaugeVec,
    /// 1 while this manager holds the leader Lease (or runs without leader election).
    pub leader: IntGauge,
    phases: Mutex<HashMap<String, &'static str>>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered in a registry of their own (plus the process collector).
    pub fn new() -> Self {
        let fast = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let m = Self {
            registry: Registry::new(),
            reconciles: counter(
                "controller_runtime_reconcile_total",
                "Reconciles per controller and result",
                &["controller", "result"],
            ),
            reconcile_errors: counter(
                "controller_runtime_reconcile_errors_total",
                "Failed reconciles per controller",
                &["controller"],
            ),
            errors_by_reason: counter(
                "capkind_reconcile_errors_total",
                "Failed reconciles per controller and reason",
                &["controller", "reason"],
            ),
            reconcile_time: histogram(
                "controller_runtime_reconcile_time_seconds",
                "Time per reconcile",
                &["controller"],
                fast.clone(),
            ),
            active_workers: IntGaugeVec::new(
                Opts::new("controller_runtime_active_workers", "Reconciles in flight"),
                &["controller"],
            )
            .expect("valid"),
            max_workers: IntGaugeVec::new(
                Opts::new(
                    "controller_runtime_max_concurrent_reconciles",
                    "Reconciles allowed at once",
                ),
                &["controller"],
            )
            .expect("valid"),
            docker_requests: counter(
                "capkind_docker_requests_total",
                "Docker API calls per operation and result",
                &["op", "result"],
            ),
            api_requests: counter(
                "rest_client_requests_total",
                "Kubernetes API requests per HTTP method and status code (client-go's name)",
                &["method", "code"],
            ),
            api_rate_limited: prometheus::Counter::new(
                "capkind_api_rate_limited_seconds_total",
                "Seconds the Kubernetes API requests were held back by --kube-api-qps and --kube-api-burst",
            )
            .expect("valid"),
            docker_time: histogram(
                "capkind_docker_request_duration_seconds",
                "Docker API call latency",
                &["op"],
                fast,
            ),
            bootstrap_time: Histogram::with_opts(
                HistogramOpts::new(
                    "capkind_bootstrap_duration_seconds",
                    "Time from bootstrap start to success",
                )
                .buckets(vec![1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
            )
            .expect("valid"),
            events_refused: counter(
                "capkind_events_refused_total",
                "Events the API server refused to record, per event reason",
                &["reason"],
            ),
            machines: IntGaugeVec::new(
                Opts::new("capkind_machines", "KindMachines per phase"),
                &["phase"],
            )
            .expect("valid"),
            leader: IntGauge::new("capkind_leader", "1 while this manager is the leader")
                .expect("valid"),
            phases: Mutex::default(),
        };
        let build = IntGaugeVec::new(
            Opts::new("capkind_build_info", "Version of the manager"),
            &["version"],
        )
        .expect("valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.reconciles.clone()),
            Box::new(m.reconcile_errors.clone()),
            Box::new(m.errors_by_reason.clone()),
            Box::new(m.reconcile_time.clone()),
            Box::new(m.active_workers.clone()),
            Box::new(m.max_workers.clone()),
            Box::new(m.docker_requests.clone()),
            Box::new(m.api_requests.clone()),
            Box::new(m.api_rate_limited.clone()),
            Box::new(m.docker_time.clone()),
            Box::new(m.bootstrap_time.clone()),
            Box::new(m.events_refused.clone()),
            Box::new(m.machines.clone()),
            Box::new(m.leader.clone()),
            Box::new(build),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            // Names are fixed and distinct; a clash would be a bug caught by the tests.
            let _ = m.registry.register(c);
        }
        m
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records the concurrency limit of a controller.
    pub fn set_max_workers(&self, controller: &str, n: u16) {
        self.max_workers
            .with_label_values(&[controller])
            .set(i64::from(n));
    }

    /// Starts timing a reconcile; finish it with [`ReconcileTimer::done`].
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.active_workers.with_label_values(&[controller]).inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
            finished: false,
        }
    }

    /// Records a Kubernetes API request; `code` is the HTTP status, or `<error>` when no
    /// response came.
    pub fn api_request(&self, method: &str, code: &str) {
        self.api_requests.with_label_values(&[method, code]).inc();
    }

    /// Records time the API requests waited for the client's rate limit.
    pub fn api_rate_limited(&self, waited: std::time::Duration) {
        self.api_rate_limited.inc_by(waited.as_secs_f64());
    }

    /// Records a Docker API call.
    pub fn docker(&self, op: &'static str, ok: bool, start: Instant) {
        self.docker_requests
            .with_label_values(&[op, if ok { "success" } else { "error" }])
            .inc();
        self.docker_time
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
    }

    /// Counts an Event the API server refused.
    pub fn event_refused(&self, reason: &str) {
        self.events_refused.with_label_values(&[reason]).inc();
    }

    /// Records a finished bootstrap.
    pub fn bootstrap_succeeded(&self, seconds: u64) {
        self.bootstrap_time.observe(seconds as f64);
    }

    /// Records the phase of a machine (`None` once it is gone).
    pub fn machine_phase(&self, key: &str, phase: Option<&'static str>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(p) => phases.insert(key.to_string(), p),
            None => phases.remove(key),
        };
        self.machines.reset();
        for p in phases.values() {
            self.machines.with_label_values(&[p]).inc();
        }
    }
}

/// Times one reconcile and counts its result when done (or, if dropped, as cancelled).
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
    finished: bool,
}

impl ReconcileTimer<'_> {
    /// Counts the reconcile: `Ok` as success, `Err(reason)` as an error with that reason.
    pub fn done(mut self, result: Result<(), &str>) {
        let m = self.metrics;
        match result {
            Ok(()) => m
                .reconciles
                .with_label_values(&[self.controller, "success"])
                .inc(),
            Err(reason) => {
                m.reconciles
                    .with_label_values(&[self.controller, "error"])
                    .inc();
                m.reconcile_errors
                    .with_label_values(&[self.controller])
                    .inc();
                m.errors_by_reason
                    .with_label_values(&[self.controller, reason])
                    .inc();
            }
        }
        self.finished = true;
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let m = self.metrics;
        m.active_workers.with_label_values(&[self.controller]).dec();
        m.reconcile_time
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
        if !self.finished {
            m.reconciles
                .with_label_values(&[self.controller, "cancelled"])
                .inc();
        }
    }
}

/// A tower layer for the Kubernetes client that counts its requests in
/// `rest_client_requests_total`, so that API writes can be watched (and benchmarked), and the
/// time the rate limit beneath it held them back (`capkind_api_rate_limited_seconds_total`).
#[derive(Clone)]
pub struct ApiRequestsLayer(pub std::sync::Arc<Metrics>);

impl<S> tower::Layer<S> for ApiRequestsLayer {
    type Service = ApiRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiRequests {
            inner,
            metrics: self.0.clone(),
            held_since: None,
        }
    }
}

/// The service of [`ApiRequestsLayer`].
#[derive(Clone)]
pub struct ApiRequests<S> {
    inner: S,
    metrics: std::sync::Arc<Metrics>,
    /// When the service beneath first said it was not ready (the rate limit is spent).
    held_since: Option<Instant>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for ApiRequests<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        let poll = self.inner.poll_ready(cx);
        match (&poll, self.held_since) {
            (std::task::Poll::Pending, None) => self.held_since = Some(Instant::now()),
            (std::task::Poll::Ready(_), Some(since)) => {
                self.metrics.api_rate_limited(since.elapsed());
                self.held_since = None;
            }
            _ => {}
        }
        poll
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().clone();
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            metrics.api_request(method.as_str(), &code);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_held_back_by_the_rate_limit_are_counted() {
        use tower::{Layer, Service};
        let metrics = std::sync::Arc::new(Metrics::new());
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let limited = tower::limit::RateLimitLayer::new(1, std::time::Duration::from_millis(300))
            .layer(inner);
        let mut svc = ApiRequestsLayer(metrics.clone()).layer(limited);
        for method in [http::Method::GET, http::Method::PATCH] {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .expect("ready");
            let request = http::Request::builder()
                .method(method)
                .body(())
                .expect("request");
            svc.call(request).await.expect("response");
        }
        let text = metrics.encode();
        let waited = text
            .lines()
            .find_map(|l| l.strip_prefix("capkind_api_rate_limited_seconds_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("the rate-limit metric");
        // One request per 300 ms: the second waited for the next window.
        assert!((0.2..2.0).contains(&waited), "waited {waited} s\n{text}");
        for line in [
            "rest_client_requests_total{code=\"200\",method=\"GET\"} 1",
            "rest_client_requests_total{code=\"200\",method=\"PATCH\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }

    #[test]
    fn reconciles_and_phases_are_counted() {
        let m = Metrics::new();
        m.reconcile("kindcluster").done(Ok(()));
        m.reconcile("kindcluster").done(Err("DockerUnavailable"));
        drop(m.reconcile("kindmachine"));
        m.machine_phase("ns/a", Some("Ready"));
        m.machine_phase("ns/b", Some("Bootstrapping"));
        m.machine_phase("ns/b", Some("Ready"));
        m.machine_phase("ns/c", Some("Ready"));
        m.machine_phase("ns/c", None);
        let text = m.encode();
        for line in [
            "controller_runtime_reconcile_total{controller=\"kindcluster\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"kindcluster\",result=\"error\"} 1",
            "controller_runtime_reconcile_total{controller=\"kindmachine\",result=\"cancelled\"} 1",
            "capkind_reconcile_errors_total{controller=\"kindcluster\",reason=\"DockerUnavailable\"} 1",
            "controller_runtime_active_workers{controller=\"kindcluster\"} 0",
            "capkind_machines{phase=\"Ready\"} 2",
            "capkind_build_info{version=\"0.2.0\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        assert!(
            !text.contains("phase=\"Bootstrapping\""),
            "stale phase kept"
        );
    }
}
