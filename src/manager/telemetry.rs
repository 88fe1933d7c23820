//! Logs through tracing: text or JSON, with -v raising the level of capkind's own logs.

use tracing_subscriber::EnvFilter;

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
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
