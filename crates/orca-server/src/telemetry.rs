//! Logging: `tracing` to stderr, filtered by LOG_LEVEL (or RUST_LOG), JSON when LOG_FORMAT=json.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Maps the spec's pino-style levels onto tracing's.
fn directive(level: &str) -> &str {
    match level {
        "fatal" => "error",
        "silent" => "off",
        other => other,
    }
}

/// Installs the global subscriber once; later calls are ignored (tests start many servers).
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        let l = directive(level);
        EnvFilter::new(format!("warn,orca_server={l},orca_cli={l},tower_http={}", if l == "trace" { "debug" } else { "warn" }))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
