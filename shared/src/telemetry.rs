//! JSON logs with `tracing`. The Lambda runtime opens a span with the request id around each
//! invocation; handlers add grant id, integration, user and group as span fields.

use tracing_subscriber::{fmt, EnvFilter};

/// JSON lines for Lambda (CloudWatch); `RUST_LOG` filters, `info` by default.
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .without_time() // CloudWatch stamps every line
        .with_target(false)
        .try_init();
}

/// Human-readable logs on stderr for the CLI; `warn` by default so that progress bars stay clean.
pub fn init_terminal() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
