//! `consumer`: parses the configuration, sets up logging and signals, and runs [`consumer::app`].

use anyhow::Context as _;
use clap::Parser as _;
use consumer::config::Config;
use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or Ctrl-C.
fn on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
        }
        token.cancel();
    });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    logging::init(config.log_format, "consumer");
    config.validate()?;
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone())?;
    consumer::app::run(config, shutdown).await
}
