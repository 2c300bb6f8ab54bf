//! `producer`: parses the command line, sets up logging and signals, and runs the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use producer::config::{Cli, Command, FrameTimeUnit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Decode(args)) => {
            let unit = match args.time_unit {
                FrameTimeUnit::Ms => binance::TimeUnit::Millisecond,
                FrameTimeUnit::Us => binance::TimeUnit::Microsecond,
            };
            let stdin = std::io::stdin().lock();
            let stdout = std::io::BufWriter::new(std::io::stdout().lock());
            match producer::decode::decode(
                stdin,
                stdout,
                std::io::stderr(),
                unit,
                service::clock::now_us,
            ) {
                Ok(r) if r.errors == 0 => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("{} of {} lines could not be decoded", r.errors, r.lines);
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("decode: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Run(args)) => serve(*args),
        None => serve(cli.run),
    }
}

fn serve(args: producer::config::RunArgs) -> ExitCode {
    logging::init(args.log_format, "producer");
    // The dependency graph compiles two rustls crypto providers; pick one for wss://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let settings = producer::Settings::from_args(&args)?;
        let shutdown = service::shutdown::on_signal("no more reads, flushing");
        producer::run(settings, shutdown).await.context("producer")
    });
    match result {
        Ok(report) => {
            tracing::info!(
                trades_published = report.trades_published,
                gaps_published = report.gaps_published,
                unpublished_symbols = report.unpublished.len(),
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "producer failed");
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
