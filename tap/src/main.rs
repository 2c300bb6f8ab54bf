//! `tap`: print the trade topic's trades, decoded. Flags and environment: `tap --help`.
//!
//! This file only parses flags, turns Ctrl-C and SIGTERM into a cancellation token, calls
//! [`tap::run`] and prints its summary; everything else is in the library.

use std::io::{self, Write as _};

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = tap::Args::parse();
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;

    let mut out = io::stdout().lock();
    let mut err = io::stderr();
    let summary = tap::run(&args, &mut out, &mut err, shutdown)
        .await
        .context("tap stopped")?;
    writeln!(
        err,
        "tap: {} printed, {} invalid, {} duplicates dropped, {} not asked for skipped ({:?})",
        summary.printed, summary.invalid, summary.duplicates, summary.not_wanted, summary.stop
    )?;
    Ok(())
}

/// Cancels `token` on the first Ctrl-C (SIGINT) or SIGTERM; tap then deletes its subscription.
fn spawn_signal_handler(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        token.cancel();
    });
    Ok(())
}
