//! Logging: `tracing` to stderr, as text or JSON, filtered by RUST_LOG.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls are ignored).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
