//! `uspwatch run`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use uspwatch::config;
use uspwatch::gateway::Gateway;

/// Arguments of `uspwatch run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML); without it the built-in defaults apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override `http.listen`.
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut cfg = config::load(args.config.as_deref())?;
    if let Some(l) = args.http_listen {
        cfg.http.listen = l;
    }
    uspwatch::telemetry::init_logging(&cfg.log);
    let metrics = uspwatch::telemetry::metrics();
    let shutdown = CancellationToken::new();
    let gw = Arc::new(Gateway::start(cfg, shutdown.clone()).await?);
    let http = uspwatch::http::serve(gw.clone(), metrics, shutdown.clone()).await?;
    info!(%http, "HTTP API, /metrics and health ready");
    wait_for_signal().await;
    info!("shutting down");
    shutdown.cancel();
    // Anything not yet durable stays unacknowledged, so devices resend it after a restart.
    if tokio::time::timeout(std::time::Duration::from_secs(10), gw.pipeline.join())
        .await
        .is_err()
    {
        tracing::warn!("pipeline did not stop within 10s");
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
