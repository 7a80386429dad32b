//! What the local stack's server binaries share as processes (this issuer's and the local API's
//! `main`): logs as text on stderr, the port file and the ready line, stopping on a signal.

use anyhow::Context;
use std::{net::SocketAddr, path::Path};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// Logs to stderr (stdout carries the ready line), `RUST_LOG` or `info`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
}

/// Writes the port to `port_file` (whole or not at all: through a renamed temporary file), then
/// prints `{name} listening on http://{addr}` for whoever waits for it.
pub fn announce(name: &str, addr: SocketAddr, port_file: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = port_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.port().to_string()).with_context(|| format!("writing {}", path.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{name} listening on http://{addr}");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers at once (call it before serving, so an early signal
/// is not lost) and returns what resolves at the first of them.
pub fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
