//! The webhook server's metrics, in a registry of their own that /metrics shows after the
//! manager's. Labels are bounded: the route (nine of them), the result (a handful of words).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// How a request ended, as the `result` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted (possibly with a patch), or every object converted.
    Allowed,
    /// Refused: the object is invalid, of a kind the route does not serve, or not convertible.
    Denied,
    /// The body was not a review: answered 400.
    BadRequest,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::BadRequest => "bad_request",
        }
    }
}

/// The webhook metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    reloads: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The metrics, registered.
    pub fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "capkind_webhook_requests_total",
                "Webhook requests per route and result",
            ),
            &["webhook", "result"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "capkind_webhook_duration_seconds",
                "Time to answer a webhook request",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["webhook"],
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "capkind_webhook_certificate_reloads_total",
                "Serving certificate changes seen on disk: loaded (success) or refused (error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let registry = Registry::new();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(reloads.clone()),
        ] {
            // Fixed, distinct names: a clash would be a bug the tests catch.
            let _ = registry.register(c);
        }
        Self {
            registry,
            requests,
            duration,
            reloads,
        }
    }

    /// Records one answered request.
    pub fn request(&self, webhook: &str, outcome: Outcome, took: Duration) {
        self.requests
            .with_label_values(&[webhook, outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[webhook])
            .observe(took.as_secs_f64());
    }

    /// Records a certificate change: loaded or refused.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_reloads_are_counted() {
        let m = Metrics::new();
        m.request("/convert", Outcome::Allowed, Duration::from_millis(2));
        m.request("/convert", Outcome::Denied, Duration::from_millis(2));
        m.reload(true);
        let text = m.encode();
        for line in [
            r#"capkind_webhook_requests_total{result="allowed",webhook="/convert"} 1"#,
            r#"capkind_webhook_requests_total{result="denied",webhook="/convert"} 1"#,
            r#"capkind_webhook_duration_seconds_count{webhook="/convert"} 2"#,
            r#"capkind_webhook_certificate_reloads_total{result="success"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
    }
}
