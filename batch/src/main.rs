//! `batch`: parses the command line, sets up logging, builds the clients, runs one command.

use std::process::ExitCode;

use batch::cli::{Cli, Command};
use batch::commands::{self, Batch};
use batch::metrics::Metrics;
use binance::RestClient;
use clap::Parser as _;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::Datasets;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.global.log_format, "batch");
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let symbols = cli.global.validate()?;
    // A backfill's bounds are checked before any I/O (the library checks them again).
    if let Command::Backfill {
        from, to, max_days, ..
    } = &cli.command
    {
        batch::backfill::check_range(*from, *to, *max_days)?;
    }
    // So are a history task's Cloud Run shard variables.
    if let Command::History {
        task_index,
        task_count,
        ..
    } = &cli.command
    {
        batch::history::Shard::from_env_values(task_index.as_deref(), task_count.as_deref())?;
    }
    let rest = RestClient::new(commands::rest_config(&cli.global, &cli.command))?;
    rest_metrics(&rest).serve(cli.global.metrics_addr).await;
    let g = &cli.global;
    let target = service::gcp::target(
        g.project.clone().unwrap_or_default(),
        None,
        Some(&g.bigquery),
    );
    let batch = Batch {
        rest,
        warehouse: Warehouse::connect(&target).await?,
        target,
        datasets: Datasets {
            market: g.market_dataset.clone(),
            dwh: g.dwh_dataset.clone(),
            scd: g.scd_dataset.clone(),
        },
        symbols,
        concurrency: usize::from(g.concurrency),
    };
    batch.run(cli.command, service::clock::now_us()).await
}

/// The REST weight Binance reports (`X-MBX-USED-WEIGHT-1M`) and our own budget's view of it.
fn rest_metrics(rest: &RestClient) -> Metrics {
    let mut m = Metrics::default();
    let r = rest.clone();
    m.gauge(
        "batch_rest_used_weight",
        "Last X-MBX-USED-WEIGHT-1M reported by Binance",
        move || i64::from(r.used_weight()),
    );
    let r = rest.clone();
    m.gauge(
        "batch_rest_budget_used",
        "Request weight our budget counts in the current minute",
        move || i64::from(r.budget_used()),
    );
    m
}
