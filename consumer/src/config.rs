//! The consumer's configuration: one clap struct, every flag with an environment fallback (names
//! shared by every component, see the contract), defaults defined here once, and
//! [`Config::validate`] run at start-up so a wrong setting fails with its name and the reason.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::batcher::{APPEND_ROWS_MAX_BYTES, Limits, REQUEST_OVERHEAD_BYTES};

/// How log lines are written (the one every binary shares).
pub use logging::Format as LogFormat;

/// Pulls Binance trades (and gap records) from Pub/Sub and writes them to BigQuery.
///
/// Every message is acknowledged only after BigQuery acknowledged its row. Rows are appended
/// at-least-once to `<dataset>.trades_raw`; users query the `<dataset>.trades` view, which keeps
/// exactly one row per (symbol, trade_id). Undecodable or invalid messages, and rows BigQuery
/// names in row errors, go to the dead-letter topic with a `reason` attribute. An append BigQuery
/// refuses as a whole (a dropped or retyped column, a missing table, no permission) blames no
/// row: the consumer holds the rows, acks nothing, turns /healthz 503 and retries until the fix
/// lands (it does not exit). SIGTERM stops pulling, flushes the open batch, acks what landed and
/// exits 0 within --shutdown-deadline.
///
/// `consumer replay --help`: republish dead letters to the trade or gap topic.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer", version = build_info::VERSION, about, long_about)]
pub struct Config {
    /// Google Cloud project that owns the subscriptions, topics and datasets.
    #[arg(long, env = "GCP_PROJECT")]
    pub project: String,

    #[command(flatten)]
    pub pubsub: service::gcp::PubSubFlags,

    #[command(flatten)]
    pub bigquery: service::gcp::BigQueryFlags,

    /// Subscription carrying encoded `Trade` messages.
    #[arg(long, env = "TRADE_SUBSCRIPTION", default_value = "binance-trades-bq")]
    pub trade_subscription: String,

    /// Subscription carrying encoded `Gap` records (landed in `<dataset>.gaps`).
    #[arg(long, env = "GAP_SUBSCRIPTION", default_value = "binance-gaps-bq")]
    pub gap_subscription: String,

    /// Topic that receives poison messages, with `reason` and `reason_detail` attributes.
    #[arg(
        long,
        env = "DEAD_LETTER_TOPIC",
        default_value = "binance-trades-dead-letter"
    )]
    pub dead_letter_topic: String,

    /// Trade topic (only used by --create-missing, to attach the subscription).
    #[arg(long, env = "TRADE_TOPIC", default_value = "binance-trades")]
    pub trade_topic: String,

    /// Gap topic (only used by --create-missing, to attach the subscription).
    #[arg(long, env = "GAP_TOPIC", default_value = "binance-gaps")]
    pub gap_topic: String,

    /// BigQuery dataset holding `trades_raw`, the `trades` view and `gaps`.
    #[arg(long, env = "BQ_MARKET_DATASET", default_value = "market")]
    pub market_dataset: String,

    /// Address of the /healthz and Prometheus /metrics endpoint.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9101")]
    pub metrics_addr: SocketAddr,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Close a batch when it holds this many rows.
    #[arg(long, env = "BATCH_MAX_ROWS", default_value_t = 1000)]
    pub batch_max_rows: usize,

    /// Close a batch when its rows reach this many bytes (at most 10 MB minus 64 KiB: the
    /// AppendRows request limit, less room for the schema and stream name).
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = 5_000_000)]
    pub batch_max_bytes: usize,

    /// Close a batch at the latest this long after its first row (e.g. 500ms, 1s, 2m). Bounds
    /// the exchange-to-BigQuery latency at quiet times.
    #[arg(long, env = "BATCH_MAX_AGE", default_value = "1s", value_parser = service::duration::parse)]
    pub batch_max_age: Duration,

    /// Flow control: Pub/Sub stops sending when this many messages are unacked, per stream.
    #[arg(long, env = "MAX_OUTSTANDING_MESSAGES", default_value_t = 5000)]
    pub max_outstanding_messages: i64,

    /// Flow control: Pub/Sub stops sending when this many bytes are unacked, per stream.
    #[arg(long, env = "MAX_OUTSTANDING_BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_outstanding_bytes: i64,

    /// Each lease extension asks Pub/Sub for this much more time (10s..600s). A crashed consumer's
    /// messages are redelivered after at most this long.
    #[arg(long, env = "LEASE_EXTENSION", default_value = "60s", value_parser = service::duration::parse)]
    pub lease_extension: Duration,

    /// Stop extending a message's lease after this long (BigQuery down longer than this: the
    /// message is redelivered, which the deduplicating view absorbs).
    #[arg(long, env = "MAX_LEASE", default_value = "1h", value_parser = service::duration::parse)]
    pub max_lease: Duration,

    /// Give up on one AppendRows call after this long and retry it.
    #[arg(long, env = "APPEND_TIMEOUT", default_value = "30s", value_parser = service::duration::parse)]
    pub append_timeout: Duration,

    /// Remember this many recently landed (symbol, trade_id) keys to skip duplicate rows
    /// (redeliveries, producer overlaps). 0 disables it; the view deduplicates anyway.
    #[arg(long, env = "DEDUP_WINDOW", default_value_t = 200_000)]
    pub dedup_window: usize,

    /// /healthz turns 503 when held rows have waited this long for an append that lands
    /// (transient failures: BigQuery down, timeouts). A refusal turns it 503 at once.
    #[arg(long, env = "STUCK_AFTER", default_value = "60s", value_parser = service::duration::parse)]
    pub stuck_after: Duration,

    /// Longest wait between retries of an append BigQuery refused as a whole (outage mode:
    /// schema drift, missing table or dataset, permission denied); retries start at 1 s.
    #[arg(long, env = "REFUSED_RETRY_MAX", default_value = "60s", value_parser = service::duration::parse)]
    pub refused_retry_max: Duration,

    /// Reopen the trade subscription's streaming pull after this long without a message (BTCUSDT
    /// alone averages ~35 trades/s, so a silent minute means something is broken); silent again
    /// after the reopen, /healthz and /livez turn 503 until a message arrives. 0 turns it off.
    /// Never applied to the gap subscription (gap records are rare).
    #[arg(long, env = "PULL_SILENCE", default_value = "60s", value_parser = service::duration::parse)]
    pub pull_silence: Duration,

    /// On SIGTERM, flush and ack within this long, then exit (keep it below the platform's
    /// grace period: Cloud Run and `docker stop` give 10 s).
    #[arg(long, env = "SHUTDOWN_DEADLINE", default_value = "8s", value_parser = service::duration::parse)]
    pub shutdown_deadline: Duration,

    /// Create missing topics, subscriptions, datasets, tables and the view first (local runs;
    /// in the cloud Terraform owns them).
    #[arg(long, env = "CREATE_MISSING")]
    pub create_missing: bool,

    /// FAULT INJECTION, never in production: ack each trade the moment it is pulled, before
    /// BigQuery has it. The chaos test runs with it to prove that it detects the loss this causes
    /// when the consumer is killed.
    #[arg(long, env = "CONSUMER_UNSAFE_ACK_ON_RECEIPT", hide = true)]
    pub unsafe_ack_on_receipt: bool,
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The flag name.
    pub setting: &'static str,
    /// Why it is wrong.
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

impl Config {
    /// Checks what clap cannot: ranges and settings that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_max_rows == 0 {
            return Err(bad("--batch-max-rows", "must be at least 1"));
        }
        let max_bytes = APPEND_ROWS_MAX_BYTES - REQUEST_OVERHEAD_BYTES;
        if self.batch_max_bytes == 0 || self.batch_max_bytes > max_bytes {
            return Err(bad(
                "--batch-max-bytes",
                format!(
                    "{} is outside 1..={max_bytes} (AppendRows takes at most 10 MB per request)",
                    self.batch_max_bytes
                ),
            ));
        }
        if self.batch_max_age.is_zero() {
            return Err(bad("--batch-max-age", "must be more than 0"));
        }
        if self.max_outstanding_messages > 0
            && (self.max_outstanding_messages as usize) < self.batch_max_rows
        {
            return Err(bad(
                "--max-outstanding-messages",
                format!(
                    "{} is below --batch-max-rows {}: a batch could never fill",
                    self.max_outstanding_messages, self.batch_max_rows
                ),
            ));
        }
        let ext = self.lease_extension.as_secs();
        if !(10..=600).contains(&ext) {
            return Err(bad(
                "--lease-extension",
                format!("{ext}s is outside Pub/Sub's 10s..600s ack deadline range"),
            ));
        }
        self.bigquery
            .check()
            .map_err(|why| bad("--bigquery-endpoint/--bigquery-grpc-endpoint", why))?;
        if self.shutdown_deadline.is_zero() {
            return Err(bad("--shutdown-deadline", "must be more than 0"));
        }
        if self.refused_retry_max.is_zero() {
            return Err(bad("--refused-retry-max", "must be more than 0"));
        }
        Ok(())
    }

    /// The project and endpoints for the `gcp` clients (`PUBSUB_EMULATOR_HOST` considered).
    pub fn target(&self) -> gcp::GcpTarget {
        service::gcp::target(&self.project, Some(&self.pubsub), Some(&self.bigquery))
    }

    /// The batch limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_rows: self.batch_max_rows,
            max_bytes: self.batch_max_bytes,
            max_age: self.batch_max_age,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use rstest::rstest;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["consumer", "--project", "p"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_match_the_contract_and_validate() {
        let c = parse(&[]);
        assert_eq!(c.trade_subscription, "binance-trades-bq");
        assert_eq!(c.gap_subscription, "binance-gaps-bq");
        assert_eq!(c.dead_letter_topic, "binance-trades-dead-letter");
        assert_eq!(c.market_dataset, "market");
        assert_eq!(c.metrics_addr.to_string(), "0.0.0.0:9101");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.pull_silence, Duration::from_secs(60));
        assert_eq!(c.refused_retry_max, Duration::from_secs(60));
        assert_eq!(c.stuck_after, Duration::from_secs(60));
        c.validate().unwrap();
    }

    #[test]
    fn endpoint_flags_make_the_target() {
        // The flags are service::gcp's; this checks they are wired into the consumer's target.
        let c = parse(&[
            "--bigquery-endpoint=http://b",
            "--bigquery-grpc-endpoint=b:1",
        ]);
        c.validate().unwrap();
        assert_eq!(c.target().bigquery_grpc_endpoint.as_deref(), Some("b:1"));
        let c = parse(&["--pubsub-endpoint=http://p"]);
        assert_eq!(c.target().pubsub_endpoint.as_deref(), Some("http://p"));
    }

    #[test]
    fn duration_flags_take_the_shared_syntax() {
        let c = parse(&["--batch-max-age", "250ms", "--max-lease", "1h30m"]);
        assert_eq!(c.batch_max_age, Duration::from_millis(250));
        assert_eq!(c.max_lease, Duration::from_secs(5_400));
        assert!(
            Config::try_parse_from(["consumer", "--project", "p", "--max-lease", "5x"]).is_err()
        );
    }

    #[rstest]
    #[case::zero_rows(&["--batch-max-rows", "0"], "--batch-max-rows")]
    #[case::over_ten_mb(&["--batch-max-bytes", "10485760"], "--batch-max-bytes")]
    #[case::flow_below_batch(&["--max-outstanding-messages", "10"], "--max-outstanding-messages")]
    #[case::short_lease(&["--lease-extension", "5s"], "--lease-extension")]
    #[case::half_emulator(&["--bigquery-endpoint", "http://x"], "--bigquery-endpoint")]
    #[case::no_refused_wait(&["--refused-retry-max", "0"], "--refused-retry-max")]
    fn invalid_settings_are_named(#[case] args: &[&str], #[case] setting: &str) {
        let err = parse(args).validate().unwrap_err();
        assert!(err.to_string().contains(setting), "{err}");
    }

    #[test]
    fn every_flag_has_an_env_fallback_and_help() {
        let cmd = Config::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_env().is_some(), "--{id} has no env fallback");
            assert!(arg.get_help().is_some(), "--{id} has no help");
        }
        cmd.debug_assert();
    }
}
