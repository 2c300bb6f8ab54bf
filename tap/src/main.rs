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
    // Ctrl-C or SIGTERM: tap stops reading and deletes its subscription.
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        service::shutdown::signalled().await;
        token.cancel();
    });

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
