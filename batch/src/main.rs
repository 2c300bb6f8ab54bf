//! `batch`: parses the command line, sets up logging, builds the clients, runs one command.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use batch::cli::{Cli, Command};
use batch::run::Batch;
use binance::{RestClient, RestConfig};
use clap::Parser as _;
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::Datasets;

fn now_us() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

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
    let g = &cli.global;
    let symbols = g.validate()?;
    // A backfill's bounds are checked before any I/O (the library checks them again).
    if let Command::Backfill {
        from, to, max_days, ..
    } = &cli.command
    {
        batch::backfill::check_range(*from, *to, *max_days)?;
    }
    let target = GcpTarget {
        project: g.project.clone().unwrap_or_default(),
        pubsub_endpoint: None,
        bigquery_endpoint: g.bigquery_endpoint.clone(),
        bigquery_grpc_endpoint: g.bigquery_grpc_endpoint.clone(),
    };
    // A backfill runs within its own, lower weight budget; every other command within the IP's.
    let rest = RestClient::new(match &cli.command {
        Command::Backfill {
            max_weight_per_minute,
            ..
        } => batch::backfill::rest_config(g.binance_rest_url.clone(), *max_weight_per_minute),
        _ => RestConfig {
            base_url: g.binance_rest_url.clone(),
            ..RestConfig::default()
        },
    })?;
    serve_metrics(g.metrics_addr, rest.clone()).await;
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
    let now = now_us();
    match cli.command {
        Command::Setup => {
            let n = batch.setup().await?;
            println!("setup: {n} statements applied (datasets, tables, view)");
        }
        Command::Klines { date, interval } => {
            for l in batch.klines(date, interval, now).await? {
                println!(
                    "klines {} {}: {} rows from Binance, {} rows changed",
                    l.symbol, l.day, l.rows, l.changed
                );
            }
        }
        Command::Symbols { as_of } => {
            let a = batch.symbols(as_of.unwrap_or(now)).await?;
            println!(
                "symbols: opened {:?}, closed {:?}, unchanged {:?}",
                a.opened, a.closed, a.unchanged
            );
        }
        Command::Check {
            date,
            interval,
            skip_trades,
        } => {
            let out = batch.check(date, interval, skip_trades, now).await?;
            for n in &out.notes {
                println!("check: {n}");
            }
            if !out.problems.is_empty() {
                for p in &out.problems {
                    eprintln!("check FAILED: {p}");
                }
                anyhow::bail!("check of {date} failed: {} problem(s)", out.problems.len());
            }
            println!("check {date}: passed");
        }
        Command::Reconcile { date } => {
            let mut unfilled = 0u64;
            for r in batch.reconcile(date, now).await? {
                let u: u64 = r.unfilled.iter().map(|x| x.len()).sum();
                unfilled += u;
                println!(
                    "reconcile {} {date}: {} ids missing, {} filled, {} not available from Binance {:?}",
                    r.symbol, r.missing, r.filled, u, r.unfilled
                );
            }
            if unfilled > 0 {
                anyhow::bail!("reconcile {date}: {unfilled} trade ids could not be filled");
            }
        }
        Command::Backfill {
            from,
            to,
            trades,
            max_days,
            max_weight_per_minute: _,
            force,
        } => {
            let progress = batch::progress::for_stderr();
            let started = std::time::Instant::now();
            let request = batch::run::BackfillRequest {
                first: from,
                last: to,
                interval: batch::klines::Interval::MINUTE,
                trades,
                force,
                max_days,
            };
            let b = batch
                .backfill(&request, now, progress.as_ref())
                .await
                .context("backfill (rerun the same command to resume)")?;
            let w = batch::backfill::summarize(&b.weight);
            println!(
                "backfill {from}..={to}: {} symbol-days of klines loaded, {} already complete, in {:.1} s",
                b.loaded,
                b.skipped,
                started.elapsed().as_secs_f64()
            );
            if trades {
                let unfilled: u64 = b.trades_unfilled.iter().map(|(_, _, r)| r.len()).sum();
                println!(
                    "backfill trades: {} ids missing, {} filled, {unfilled} not available from Binance",
                    b.trades_missing, b.trades_filled
                );
            }
            println!(
                "backfill weight: at most {} of {} per minute over {} minute(s), {} in total \
                 (Binance's X-MBX-USED-WEIGHT-1M up to {})",
                w.max_sent, b.budget, w.minutes, w.total_sent, w.max_header
            );
            if !b.trades_unfilled.is_empty() {
                anyhow::bail!(
                    "backfill: trade ids Binance did not return: {:?}",
                    b.trades_unfilled
                );
            }
        }
    }
    Ok(())
}

/// Serves `/healthz` and `/metrics` for the life of the process: the REST weight Binance reports
/// (`X-MBX-USED-WEIGHT-1M`) and our own budget's view of it, read at scrape time.
async fn serve_metrics(addr: std::net::SocketAddr, rest: RestClient) {
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(error) => {
            tracing::warn!(%addr, %error, "metrics endpoint not served");
            return;
        }
    };
    let used = Gauge::<i64>::default();
    let budget = Gauge::<i64>::default();
    let mut registry = Registry::default();
    registry.register(
        "batch_rest_used_weight",
        "Last X-MBX-USED-WEIGHT-1M reported by Binance",
        used.clone(),
    );
    registry.register(
        "batch_rest_budget_used",
        "Request weight our budget counts in the current minute",
        budget.clone(),
    );
    let registry = std::sync::Arc::new(registry);
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                used.set(i64::from(rest.used_weight()));
                budget.set(i64::from(rest.budget_used()));
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (axum::http::StatusCode::OK, body),
                        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
}
