//! Logs through tracing: text or JSON, with -v raising the level of capkind's own logs.
//!
//! JSON lines use the keys of controller-runtime's zap logger (`ts`, `level`, `msg`, `logger`,
//! `caller`, `error`, and a reconcile's `controller`, `controllerGroup`, `controllerKind`,
//! `namespace`, `name`, `reconcileID`), so queries written for Cluster API's providers work.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::flags::LogFormat;

/// Installs the global subscriber. RUST_LOG, when set, wins over -v.
pub fn init(format: LogFormat, verbosity: u8) {
    // kube-client's HTTP layer logs every failed request at ERROR, including the expected ones
    // (a workload cluster whose API is not up yet); the provider reports the failures that
    // matter itself, so those lines show from -vv on.
    let default = match verbosity {
        0 => "info,kube=warn,kube_client::client::builder=off",
        1 => "info,capkind=debug,kube=warn,kube_client::client::builder=off",
        2 => "info,capkind=trace,kube=info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: log files, pipes and collectors get plain text. The log is
    // written to stdout, so that is the stream that decides.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).fmt_fields(text_fields()).init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(ControllerRuntimeJson)
            .init(),
    }
}

/// Fields as tracing writes them (`name=value`, the message bare), with control characters in
/// every value escaped: tracing escapes only the message and errors, and a value that carries
/// text from elsewhere (a node's output, an engine's error) would otherwise put terminal escape
/// sequences into a log file, or move the cursor of whoever reads it on a terminal.
fn text_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let value = escape_controls(&format!("{value:?}"));
        match field.name() {
            "message" => write!(w, "{value}"),
            name => write!(w, "{name}={value}"),
        }
    })
    .delimited(" ")
}

/// `text` with control characters but newline and tab written as escapes (ESC as `\u{1b}`).
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One JSON object per event, keyed as controller-runtime's zap logger keys them.
struct ControllerRuntimeJson;

/// Keys this formatter writes itself; an event or span field of the same name is written as
/// `field.<name>` rather than twice.
const HEADER: [&str; 5] = ["ts", "level", "msg", "logger", "caller"];

impl<S, N> FormatEvent<S, N> for ControllerRuntimeJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Events that came through the `log` crate carry their real target and file as fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        // Outermost span first, so that the innermost one's fields win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(json) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json)
                {
                    fields.extend(map);
                }
            }
        }
        event.record(&mut fields);
        let line = fields.into_line(
            level(meta.level()),
            meta.target(),
            meta.file().zip(meta.line()),
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        writeln!(writer, "{line}")
    }
}

/// zap's level names; zap has no trace, so tracing's name is kept for it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The fields of an event and its spans, in the order first seen; a later value replaces an
/// earlier one of the same key.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    entries: Vec<(String, Value)>,
}

impl Fields {
    fn insert(&mut self, key: &str, value: Value) {
        if key == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        // tracing-log's own fields, already in the metadata.
        if key.starts_with("log.") {
            return;
        }
        let key = if HEADER.contains(&key) {
            format!("field.{key}")
        } else {
            key.to_string()
        };
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    fn extend(&mut self, map: Map<String, Value>) {
        for (key, value) in map {
            self.insert(&key, value);
        }
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_str())
    }

    /// The JSON line: zap's header keys first, then the fields; a reconcile also names its
    /// object under its kind, as controller-runtime does (`"KindCluster": {"name", "namespace"}`).
    fn into_line(
        mut self,
        level: &str,
        logger: &str,
        caller: Option<(&str, u32)>,
        ts: &str,
    ) -> String {
        if let (Some(kind), Some(name)) = (self.get_str("controllerKind"), self.get_str("name")) {
            let mut object = Map::new();
            object.insert("name".into(), name.into());
            if let Some(namespace) = self.get_str("namespace") {
                object.insert("namespace".into(), namespace.into());
            }
            let kind = kind.to_string();
            self.insert(&kind, Value::Object(object));
        }
        // Written by hand: serde_json's map would sort the keys, and zap's order reads better.
        let mut out = String::from("{");
        let mut push = |key: &str, value: Value| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&Value::String(key.to_string()).to_string());
            out.push(':');
            out.push_str(&value.to_string());
        };
        push("ts", ts.into());
        push("level", level.into());
        push("logger", logger.into());
        if let Some((file, number)) = caller {
            push("caller", format!("{file}:{number}").into());
        }
        push("msg", self.message.unwrap_or_default().into());
        for (key, value) in self.entries {
            push(&key, value);
        }
        out.push('}');
        out
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field.name(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field.name(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field.name(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field.name(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field.name(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field.name(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field.name(), value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: Fields) -> Value {
        let text = fields.into_line(
            "info",
            "capkind::controllers",
            Some(("src/x.rs", 7)),
            "2026-01-01T00:00:00.000000Z",
        );
        serde_json::from_str(&text).expect("one JSON object")
    }

    #[test]
    fn a_reconcile_line_has_controller_runtimes_keys() {
        let mut f = Fields::default();
        f.insert("controller", "kindcluster".into());
        f.insert("controllerGroup", "infrastructure.cluster.x-k8s.io".into());
        f.insert("controllerKind", "KindCluster".into());
        f.insert("namespace", "ns".into());
        f.insert("name", "c1".into());
        f.insert("reconcileID", "r-1".into());
        f.insert("message", "load balancer created".into());
        f.insert("error", "boom".into());
        assert_eq!(
            line(f),
            serde_json::json!({
                "ts": "2026-01-01T00:00:00.000000Z", "level": "info",
                "logger": "capkind::controllers", "caller": "src/x.rs:7",
                "msg": "load balancer created",
                "controller": "kindcluster", "controllerGroup": "infrastructure.cluster.x-k8s.io",
                "controllerKind": "KindCluster", "namespace": "ns", "name": "c1",
                "reconcileID": "r-1", "error": "boom",
                "KindCluster": {"name": "c1", "namespace": "ns"},
            })
        );
    }

    #[test]
    fn inner_values_win_and_header_keys_are_not_overwritten() {
        let mut f = Fields::default();
        f.insert("cluster", "outer".into());
        f.insert("cluster", "inner".into());
        f.insert("level", "fake".into());
        f.insert("log.target", "x".into());
        let v = line(f);
        assert_eq!(v["cluster"], "inner");
        assert_eq!(v["level"], "info");
        assert_eq!(v["field.level"], "fake");
        assert_eq!(v["msg"], "");
        assert!(v.get("log.target").is_none(), "{v}");
    }

    #[test]
    fn text_logs_escape_control_characters_in_every_field() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .fmt_fields(text_fields())
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("r", name = "a\x1b[31mb");
            let _in = span.enter();
            let red = "\x1b[31mred\x1b[0m\r";
            tracing::info!(error = %red, shown = ?red, plain = red, "said \x1b[1m{}", 1);
        });
        let text = String::from_utf8(buffer.lock().expect("buffer").clone()).expect("utf-8");
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains(r"error=\u{1b}[31mred\u{1b}[0m\r"), "{text}");
        assert!(text.contains(r#"name="a\u{1b}[31mb""#), "{text}");
        assert!(text.contains(r"said \u{1b}[1m1"), "{text}");
    }

    /// A writer into a shared buffer.
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keys_keep_zaps_order() {
        let mut f = Fields::default();
        f.insert("zeta", 1.into());
        f.insert("alpha", 2.into());
        let text = f.into_line("warn", "t", None, "now");
        assert_eq!(
            text,
            r#"{"ts":"now","level":"warn","logger":"t","msg":"","zeta":1,"alpha":2}"#
        );
    }
}
