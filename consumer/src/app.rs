//! Wiring: builds the real clients from a [`Config`], runs the trade and gap pipelines and the
//! metrics endpoint, and stops them in one place. This is the binary's edge, so it reports
//! errors with `anyhow` and context.
//!
//! Shutdown: when `shutdown` is cancelled (SIGTERM/Ctrl-C in `main`), both pipelines stop
//! pulling, write what they hold within `--shutdown-deadline`, ack what landed, nack the rest,
//! and `run` returns `Ok`. Nothing else stops them: a BigQuery refusal (schema drift, missing
//! table, no permission) puts a pipeline in outage mode, where it holds its rows, reports 503 on
//! `/healthz` and retries until the fix lands (see [`crate::pipeline`]). A restart would only
//! meet the same refusal, so the process stays up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dead_letter::PubsubDeadLetter;
use crate::metrics::{self, Metrics};
use crate::pipeline::{Gaps, Pipeline, Settings, Trades, backoff};
use crate::sink::BigQuerySink;
use crate::source::{AckOnReceipt, PubsubSource, PullSettings};

/// One pipeline's run, boxed so that the trade pipeline's source type may vary.
type RunFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Extra time past the shutdown deadline before `run` gives up waiting for its tasks.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// Pipeline settings for one subscription. `--pull-silence` applies to the trade subscription
/// only: gap records are rare, so silence on theirs means nothing.
pub fn pipeline_settings(config: &Config, subscription: &str) -> Settings {
    let pull_silence = if subscription == config.trade_subscription {
        config.pull_silence
    } else {
        Duration::ZERO
    };
    Settings {
        subscription: subscription.to_owned(),
        limits: config.limits(),
        dedup_window: config.dedup_window,
        append_timeout: config.append_timeout,
        shutdown_deadline: config.shutdown_deadline,
        backoff: backoff::transient(),
        refused_backoff: backoff::refused(config.refused_retry_max),
        pull_silence,
    }
}

/// Streaming-pull settings for one subscription (short name).
pub fn pull_settings(config: &Config, subscription: &str) -> PullSettings {
    PullSettings {
        subscription: gcp::pubsub::subscription_path(&config.project, subscription),
        max_outstanding_messages: config.max_outstanding_messages,
        max_outstanding_bytes: config.max_outstanding_bytes,
        lease_extension: config.lease_extension,
        max_lease: config.max_lease,
    }
}

/// Creates the topics, subscriptions, datasets, tables and view the consumer needs, if missing
/// (local runs; Terraform owns them in the cloud). Idempotent.
pub async fn create_missing(config: &Config) -> anyhow::Result<()> {
    let target = config.target();
    let admin = gcp::pubsub::Admin::connect(&target).await?;
    for topic in [
        &config.trade_topic,
        &config.gap_topic,
        &config.dead_letter_topic,
    ] {
        admin.ensure_topic(topic).await?;
    }
    // No ordered delivery, as in terraform/pubsub.tf: rows are keyed by (symbol, trade id), so
    // order buys the consumer nothing, while it makes one stuck message hold back its symbol.
    let spec = gcp::pubsub::SubscriptionSpec {
        ordering: false,
        ..Default::default()
    };
    admin
        .ensure_subscription(&config.trade_subscription, &config.trade_topic, &spec)
        .await?;
    admin
        .ensure_subscription(&config.gap_subscription, &config.gap_topic, &spec)
        .await?;
    let warehouse = gcp::bigquery::sql::Warehouse::connect(&target).await?;
    let datasets = gcp::bigquery::tables::Datasets {
        market: config.market_dataset.clone(),
        ..Default::default()
    };
    for statement in gcp::bigquery::tables::setup_statements(&config.project, &datasets, &[])? {
        warehouse.execute(&statement).await?;
    }
    tracing::info!(project = %config.project, dataset = %config.market_dataset, "created missing resources");
    Ok(())
}

/// Runs the consumer until `shutdown` is cancelled (Ok); Err only for a start-up failure or a
/// pipeline that did not stop in time.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    run_with_metrics(config, shutdown, metrics).await
}

/// [`run`] with a caller-provided metrics registry (tests read it).
pub async fn run_with_metrics(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    config.validate()?;
    metrics.set_stuck_after(config.stuck_after);
    let target = config.target();
    if config.create_missing {
        create_missing(&config).await.context("--create-missing")?;
    }
    let listener = service::http::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {}", config.metrics_addr))?;
    let server_stop = CancellationToken::new();
    let (addr, server) = service::http::serve(
        listener,
        metrics::router(metrics.clone()),
        server_stop.clone(),
    )?;
    tracing::info!(%addr, "serving /healthz, /livez and /metrics");

    let sink = Arc::new(
        BigQuerySink::connect(&target, &config.market_dataset)
            .await
            .context("BigQuery Storage Write")?,
    );
    let dead_letter = Arc::new(
        PubsubDeadLetter::connect(&target, &config.dead_letter_topic)
            .await
            .context("dead-letter publisher")?,
    );
    let subscriber = gcp::pubsub::subscriber(&target)
        .await
        .context("Pub/Sub subscriber")?;

    // The signal stops both; a panicking pipeline stops the other.
    let stop = shutdown.child_token();
    let trade_source = PubsubSource::new(
        subscriber.clone(),
        pull_settings(&config, &config.trade_subscription),
    );
    let trade_settings = pipeline_settings(&config, &config.trade_subscription);
    let trades: RunFuture = if config.unsafe_ack_on_receipt {
        tracing::error!(
            "--unsafe-ack-on-receipt: acking trades before BigQuery has them (fault injection; \
             a crash now loses trades)"
        );
        Box::pin(
            Pipeline::<Trades, _, _, _>::new(
                trade_settings,
                AckOnReceipt(trade_source),
                sink.clone(),
                dead_letter.clone(),
                metrics.clone(),
            )
            .run(stop.clone()),
        )
    } else {
        Box::pin(
            Pipeline::<Trades, _, _, _>::new(
                trade_settings,
                trade_source,
                sink.clone(),
                dead_letter.clone(),
                metrics.clone(),
            )
            .run(stop.clone()),
        )
    };
    let gaps = Pipeline::<Gaps, _, _, _>::new(
        pipeline_settings(&config, &config.gap_subscription),
        PubsubSource::new(subscriber, pull_settings(&config, &config.gap_subscription)),
        sink,
        dead_letter,
        metrics.clone(),
    );
    tracing::info!(trades = %config.trade_subscription, gaps = %config.gap_subscription, dataset = %config.market_dataset, "consuming");
    let spawn = |fut: RunFuture| -> JoinHandle<()> {
        let stop = stop.clone();
        tokio::spawn(async move {
            // Cancels on every way out, a panic included.
            let _stop_the_other = stop.drop_guard();
            fut.await;
        })
    };
    let trades = spawn(trades);
    let gaps = spawn(Box::pin(gaps.run(stop.clone())));

    let joined = async { (trades.await, gaps.await) };
    tokio::pin!(joined);
    let overdue = async {
        stop.cancelled().await;
        tokio::time::sleep(config.shutdown_deadline + SHUTDOWN_MARGIN).await;
    };
    let results = tokio::select! {
        r = &mut joined => r,
        _ = overdue => bail!("the pipelines did not stop within --shutdown-deadline {:?}", config.shutdown_deadline),
    };
    server_stop.cancel();
    let _ = server.await;
    for result in [results.0, results.1] {
        result.context("pipeline task panicked")?;
    }
    Ok(())
}
