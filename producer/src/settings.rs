//! The producer's settings: the command line ([`RunArgs`]) validated once into [`Settings`],
//! with errors that name the setting (the binary's edge, so `anyhow`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use gcp::GcpTarget;
use gcp::pubsub::Batching;
use trade_proto::rules::parse_symbol_list;

use crate::backfill::BackfillConfig;
use crate::config::RunArgs;
use crate::publisher::PublisherConfig;
use crate::reconnect::BINANCE_MAX_ATTEMPTS;
use crate::rotation::OverlapConfig;
use crate::supervisor::SupervisorConfig;
use crate::watchdog::WatchdogConfig;

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Project and emulator endpoint.
    pub target: GcpTarget,
    /// Trade topic (short name).
    pub trade_topic: String,
    /// Gap topic (short name).
    pub gap_topic: String,
    /// Create the topics first.
    pub create_topics: bool,
    /// Upper-case symbols.
    pub symbols: Vec<String>,
    /// Websocket base URL.
    pub ws_url: String,
    /// REST base URL.
    pub rest_url: String,
    /// Metrics server address (`127.0.0.1:0` in tests).
    pub metrics_addr: String,
    /// Pub/Sub client batching.
    pub batching: Batching,
    /// Trade queue capacity.
    pub queue_size: usize,
    /// Publisher task settings.
    pub publisher: PublisherConfig,
    /// Connection state machine settings.
    pub supervisor: SupervisorConfig,
    /// Wait before backfilling a gap.
    pub gap_grace: Duration,
    /// Longest 418 ban sat out during backfill.
    pub max_ban_wait: Duration,
    /// First wait before a chunk that failed for a passing reason is fetched again.
    pub backfill_retry: Duration,
    /// Backfill rounds for passing troubles.
    pub backfill: BackfillConfig,
    /// Reconnect backoff floor.
    pub reconnect_min: Duration,
    /// Reconnect backoff cap.
    pub reconnect_max: Duration,
    /// Websocket handshake timeout.
    pub connect_timeout: Duration,
    /// Shortest time between two reads of a socket that found nothing waiting.
    pub read_coalesce: Duration,
    /// Connection attempts per 5 minutes.
    pub max_attempts: u32,
    /// Flush deadline at shutdown.
    pub shutdown_deadline: Duration,
    /// Resume-point state file (None: each run starts at the exchange's latest id).
    pub state_file: Option<PathBuf>,
    /// How often the state file is rewritten.
    pub state_interval: Duration,
    /// Most ids backfilled per symbol after a restart.
    pub max_resume_ids: u64,
}

impl Settings {
    /// Validates the command line; the error names the setting.
    pub fn from_args(a: &RunArgs) -> anyhow::Result<Self> {
        let project = a
            .project
            .clone()
            .filter(|p| !p.trim().is_empty())
            .context("GCP_PROJECT (--project) is required: the project that owns the topics")?;
        // clap splits at the commas (and collects repeated flags); the list rule is one.
        let symbols = parse_symbol_list(&a.symbols.join(","))
            .map_err(|e| anyhow::anyhow!("SYMBOLS (--symbols): {e}"))?;
        // Binance: at most 1024 streams per connection.
        if symbols.len() > 1024 {
            bail!("SYMBOLS (--symbols): at most 1024 streams per Binance connection");
        }
        if !(a.ws_url.starts_with("wss://") || a.ws_url.starts_with("ws://")) {
            bail!(
                "BINANCE_WS_URL (--ws-url): {:?} must start with wss:// or ws://",
                a.ws_url
            );
        }
        if !(a.rest_url.starts_with("https://") || a.rest_url.starts_with("http://")) {
            bail!(
                "BINANCE_REST_URL (--rest-url): {:?} must start with https:// or http://",
                a.rest_url
            );
        }
        if a.rest_url.contains("data-api.binance.vision") {
            bail!(
                "BINANCE_REST_URL (--rest-url): data-api.binance.vision does not serve historicalTrades, which backfill needs; use https://api.binance.com (or api1..api4, api-gcp)"
            );
        }
        // Pub/Sub: at most 1000 messages and 10 MB per publish request.
        if a.batch_messages == 0 || a.batch_messages > 1000 {
            bail!(
                "PRODUCER_BATCH_MESSAGES (--batch-messages): {} must be within 1..=1000 (Pub/Sub limit)",
                a.batch_messages
            );
        }
        if a.batch_bytes == 0 || a.batch_bytes > 10_000_000 {
            bail!(
                "PRODUCER_BATCH_BYTES (--batch-bytes): {} must be within 1..=10000000 (Pub/Sub limit)",
                a.batch_bytes
            );
        }
        if a.queue_size == 0 || a.max_in_flight == 0 {
            bail!("PRODUCER_QUEUE_SIZE and PRODUCER_MAX_IN_FLIGHT must be at least 1");
        }
        if a.max_attempts == 0 || a.max_attempts > BINANCE_MAX_ATTEMPTS {
            bail!(
                "PRODUCER_MAX_ATTEMPTS (--max-attempts): {} must be within 1..={BINANCE_MAX_ATTEMPTS} (Binance's limit per 5 minutes)",
                a.max_attempts
            );
        }
        if a.state_interval.is_zero() {
            bail!("PRODUCER_STATE_INTERVAL (--state-interval): must be above zero");
        }
        if a.max_resume_ids == 0 {
            bail!(
                "PRODUCER_MAX_RESUME_IDS (--max-resume-ids): must be at least 1 (unset PRODUCER_STATE_FILE to not resume)"
            );
        }
        if a.rotate_after.is_zero() || a.rotate_after >= Duration::from_secs(24 * 3600) {
            bail!(
                "PRODUCER_ROTATE_AFTER (--rotate-after): {:?} must be above zero and below Binance's 24h cut",
                a.rotate_after
            );
        }
        Ok(Self {
            target: service::gcp::target(project, Some(&a.pubsub), None),
            trade_topic: a.trade_topic.clone(),
            gap_topic: a.gap_topic.clone(),
            create_topics: a.create_topics,
            symbols,
            ws_url: a.ws_url.clone(),
            rest_url: a.rest_url.clone(),
            metrics_addr: a.metrics_addr.clone(),
            batching: Batching {
                max_messages: a.batch_messages,
                max_bytes: a.batch_bytes,
                max_delay: a.batch_delay,
            },
            queue_size: a.queue_size,
            publisher: PublisherConfig {
                max_in_flight: a.max_in_flight,
                ..PublisherConfig::default()
            },
            supervisor: SupervisorConfig {
                rotate_after: a.rotate_after,
                overlap: OverlapConfig {
                    quiet_grace: a.quiet_grace,
                    max_overlap: a.max_overlap,
                },
                watchdog: WatchdogConfig {
                    silence: a.watchdog_silence,
                    socket_timeout: a.socket_timeout,
                },
            },
            gap_grace: a.gap_grace,
            max_ban_wait: a.max_ban_wait,
            backfill_retry: a.backfill_retry,
            backfill: BackfillConfig::default(),
            reconnect_min: a.reconnect_min,
            reconnect_max: a.reconnect_max,
            connect_timeout: Duration::from_secs(10),
            read_coalesce: a.read_coalesce,
            max_attempts: a.max_attempts,
            shutdown_deadline: a.shutdown_deadline,
            state_file: a
                .state_file
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            state_interval: a.state_interval,
            max_resume_ids: a.max_resume_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use service::gcp::{PubSubFlags, resolve_pubsub};

    use super::*;
    use crate::config::Cli;

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["producer", "--project", "p"];
        argv.extend_from_slice(args);
        Settings::from_args(&Cli::try_parse_from(argv).unwrap().run)
    }

    #[test]
    fn symbols_are_upper_cased_and_checked_by_the_list_rule() {
        let s = settings(&["--symbols", "btcusdt, 1000sats,ETH-BTC"]).unwrap();
        assert_eq!(s.symbols, ["BTCUSDT", "1000SATS", "ETH-BTC"]);
        let s = settings(&["--symbols", "btcusdt", "--symbols", "arbusdt"]).unwrap();
        assert_eq!(s.symbols, ["BTCUSDT", "ARBUSDT"], "repeated flags add up");
        for bad in ["BTC/USDT", "ABCDEFGHIJKLMNOPQRSTU"] {
            let e = settings(&["--symbols", bad]).unwrap_err().to_string();
            assert!(e.starts_with("SYMBOLS (--symbols)"), "{e}");
            assert!(e.contains(trade_proto::rules::SYMBOL_PATTERN), "{e}");
            assert!(e.contains(bad), "{e}");
        }
        // A repeat or an empty entry is a typo to fix, not something to guess around.
        for bad in ["btcusdt, BTCUSDT", "BTCUSDT,,ETH-BTC", ""] {
            let e = settings(&["--symbols", bad]).unwrap_err().to_string();
            assert!(e.starts_with("SYMBOLS (--symbols)"), "{e}");
        }
    }

    #[test]
    fn an_emulator_host_as_gcloud_prints_it_resolves_and_the_flag_wins() {
        // `PubSubFlags::endpoint` reads PUBSUB_EMULATOR_HOST from the process; given here instead.
        let unset = PubSubFlags::default();
        assert_eq!(
            resolve_pubsub(unset.pubsub_endpoint.as_deref(), Some("localhost:8085")).as_deref(),
            Some("http://localhost:8085")
        );
        let s = settings(&["--pubsub-endpoint", "http://127.0.0.1:1"]).unwrap();
        assert_eq!(
            s.target.pubsub_endpoint.as_deref(),
            Some("http://127.0.0.1:1")
        );
        let cli = Cli::try_parse_from(["producer", "--pubsub-endpoint", "http://127.0.0.1:1"]);
        let flag = cli.unwrap().run.pubsub.pubsub_endpoint;
        assert_eq!(
            resolve_pubsub(flag.as_deref(), Some("localhost:8085")).as_deref(),
            Some("http://127.0.0.1:1")
        );
    }
}
