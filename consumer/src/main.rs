//! `consumer`: parses the configuration, sets up logging and signals, and runs [`consumer::app`];
//! `consumer replay ...` runs [`consumer::replay`] instead.

use anyhow::{Context as _, bail};
use clap::Parser as _;
use consumer::config::Config;
use consumer::replay::ReplayArgs;
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
    let shutdown = CancellationToken::new();
    // One subcommand, so the consumer's own flags stay at the top level (and in its --help).
    if std::env::args_os().nth(1).is_some_and(|a| a == "replay") {
        let argv = std::iter::once(std::ffi::OsString::from("consumer replay"))
            .chain(std::env::args_os().skip(2));
        let args = ReplayArgs::parse_from(argv);
        logging::init(args.log_format, "consumer-replay");
        on_signal(shutdown.clone())?;
        let summary = consumer::replay::run(&args, shutdown).await?;
        print!("{summary}");
        if summary.failed() > 0 {
            bail!("{} republish(es) failed", summary.failed());
        }
        return Ok(());
    }
    let config = Config::parse();
    logging::init(config.log_format, "consumer");
    config.validate()?;
    on_signal(shutdown.clone())?;
    consumer::app::run(config, shutdown).await
}
