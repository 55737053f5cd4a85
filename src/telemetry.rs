//! Logging through tracing: human-readable by default, JSON with `LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`). Safe to call twice.
pub fn init(format: LogFormat) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("daftra-bridge: RUST_LOG={v:?} is not a valid filter ({e}); using info");
            EnvFilter::new("info")
        }),
        _ => EnvFilter::new("info"),
    };
    // lapin logs every returned (unroutable) message whole, as a byte array (kilobytes of record
    // data per event), and an ERROR line of its own for every channel or connection the broker
    // closes. The bridge logs one line of its own for each instead; RUST_LOG naming lapin
    // brings lapin's back.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if v.contains("lapin") => filter,
        _ => filter.add_directive("lapin=off".parse().expect("a valid directive")),
    };
    // Colour codes only for a person at a terminal: a file, a pipe or a log collector gets
    // plain text (or JSON with LOG_FORMAT=json).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
