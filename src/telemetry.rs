//! Logging: `tracing` to stderr, as plain text or JSON lines. Stdout is left to the CLI's
//! own output (the demo's instructions, `wicket check`'s table).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid --log-level {level:?}: {source}")]
    Filter {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("logging was already initialised")]
    AlreadySet,
}

/// rustls logs (through the `log` crate, which kube's TLS stack turns on) a warning for
/// every handshake with a common client quirk, such as an IP address sent as SNI; wicket
/// logs handshake failures itself. Kept to errors unless the filter names rustls.
const QUIET_RUSTLS: &str = "rustls=error";

/// `level` is a tracing filter: `info`, `debug`, or `wicket=debug,hyper=info`.
pub fn init(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter =
        EnvFilter::try_new(filter_directives(level)).map_err(|source| TelemetryError::Filter {
            level: level.to_owned(),
            source,
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadySet)
}

/// An error with its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn filter_directives(level: &str) -> String {
    if level.contains("rustls") {
        level.to_owned()
    } else {
        format!("{level},{QUIET_RUSTLS}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_per_handshake_warnings_are_quiet_unless_asked_for() {
        assert_eq!(filter_directives("info"), "info,rustls=error");
        assert_eq!(
            filter_directives("debug,rustls=debug"),
            "debug,rustls=debug"
        );
        assert!(EnvFilter::try_new(filter_directives("wicket=debug,hyper=info")).is_ok());
    }
}
