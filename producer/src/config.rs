//! The command line: `producer run` (the default) and `producer decode`, every flag with an
//! environment fallback, validated into [`crate::settings::Settings`] with errors that name the
//! setting.
//!
//! Environment names shared with the other binaries (`GCP_PROJECT`, `PUBSUB_ENDPOINT`,
//! `TRADE_TOPIC`, `GAP_TOPIC`, `SYMBOLS`, `BINANCE_WS_URL`, `BINANCE_REST_URL`, `METRICS_ADDR`,
//! `LOG_FORMAT`) are the project's contract; tuning flags use a `PRODUCER_` prefix.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use service::duration::parse as parse_duration;
use service::symbols::DEFAULT_SYMBOLS;

/// Binance trade streams to Google Cloud Pub/Sub, with no trade lost.
///
/// Connects to Binance's combined trade stream for the configured symbols, publishes each
/// trade as a protobuf `Trade` to a Pub/Sub topic (ordering key = symbol, attributes `symbol`
/// and `source`), fills trade-id gaps over REST (`source = backfill`), and writes a `Gap` record
/// to a second topic for any id it cannot recover. Connections are rotated before Binance's
/// 24-hour cut and on `serverShutdown` without losing or duplicating a trade.
///
/// Without a subcommand, `run` is assumed. Every flag can also be set through the environment
/// variable shown in brackets.
#[derive(Debug, Parser)]
#[command(name = "producer", version = build_info::VERSION, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run` when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream trades from Binance to Pub/Sub (the default).
    Run(Box<RunArgs>),
    /// Read raw Binance frames from stdin (one per line, raw or combined) and print the Trade
    /// each becomes as one JSON object per line. Bad lines are reported on stderr with their
    /// line number and the reason; the rest still flow.
    Decode(DecodeArgs),
}

/// Log output format (the one every binary shares).
pub use logging::Format as LogFormat;

/// Time unit of frames given to `decode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FrameTimeUnit {
    /// Milliseconds (Binance's default).
    Ms,
    /// Microseconds (`timeUnit=MICROSECOND`, what `run` asks for).
    Us,
}

/// Options of `decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Unit of the frames' `E` and `T` fields.
    #[arg(
        long,
        value_enum,
        default_value = "ms",
        env = "PRODUCER_DECODE_TIME_UNIT"
    )]
    pub time_unit: FrameTimeUnit,
}

/// Options of `run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Google Cloud project that owns the topics.
    #[arg(long, env = "GCP_PROJECT")]
    pub project: Option<String>,
    /// `--pubsub-endpoint` / `PUBSUB_ENDPOINT` (emulator only), else `PUBSUB_EMULATOR_HOST`.
    #[command(flatten)]
    pub pubsub: service::gcp::PubSubFlags,
    /// Topic receiving trades.
    #[arg(long, env = "TRADE_TOPIC", default_value = "binance-trades")]
    pub trade_topic: String,
    /// Topic receiving gap records (trade ids that could not be recovered).
    #[arg(long, env = "GAP_TOPIC", default_value = "binance-gaps")]
    pub gap_topic: String,
    /// Create both topics if missing (local runs; in the cloud Terraform owns them).
    #[arg(long, env = "PRODUCER_CREATE_TOPICS")]
    pub create_topics: bool,
    /// Symbols to stream, comma-separated.
    #[arg(long, env = "SYMBOLS", default_value = DEFAULT_SYMBOLS, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Binance websocket host. The market-data host serves trade streams everywhere Binance
    /// operates.
    #[arg(
        long,
        env = "BINANCE_WS_URL",
        default_value = "wss://data-stream.binance.vision"
    )]
    pub ws_url: String,
    /// Binance REST host for backfill (historicalTrades; the data-api host does not serve it).
    #[arg(
        long,
        env = "BINANCE_REST_URL",
        default_value = "https://api.binance.com"
    )]
    pub rest_url: String,
    /// Address of the /metrics and /healthz server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9100")]
    pub metrics_addr: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Pub/Sub batching: messages per batch (Pub/Sub allows at most 1000).
    #[arg(long, env = "PRODUCER_BATCH_MESSAGES", default_value_t = 1000)]
    pub batch_messages: u32,
    /// Pub/Sub batching: bytes per batch (Pub/Sub allows at most 10 MB).
    #[arg(long, env = "PRODUCER_BATCH_BYTES", default_value_t = 1_000_000)]
    pub batch_bytes: u32,
    /// Pub/Sub batching: longest wait before a batch is sent. A request carries one ordering key
    /// (symbol), so at Binance's rates this window sets the publish RPCs per second, and they
    /// are most of the producer's CPU; 20 ms was the widest that kept exchange->published p99
    /// within 100 ms (BENCHMARKS.md).
    #[arg(long, env = "PRODUCER_BATCH_DELAY", default_value = "20ms", value_parser = parse_duration)]
    pub batch_delay: Duration,
    /// Read each socket at most this often (0: as every frame arrives). Frames that arrive in
    /// between wait in the kernel and are handled together, so one wake-up carries many trades;
    /// the delay it adds is at most this long.
    #[arg(long, env = "PRODUCER_READ_COALESCE", default_value = "10ms", value_parser = parse_duration)]
    pub read_coalesce: Duration,
    /// Trades queued for Pub/Sub at most; when full, reading from Binance pauses. With
    /// `--max-in-flight` this bounds the memory a Pub/Sub outage can take (~0.6 KB a message:
    /// the defaults hold ~15,000, ~9 MB, ~10 s of BTCUSDT's bursts).
    #[arg(long, env = "PRODUCER_QUEUE_SIZE", default_value_t = 10_000)]
    pub queue_size: usize,
    /// Messages outstanding at Pub/Sub at most, awaiting acknowledgement or held for a retry.
    #[arg(long, env = "PRODUCER_MAX_IN_FLIGHT", default_value_t = 5_000)]
    pub max_in_flight: usize,
    /// Rotate a connection (make-before-break) at this age; Binance cuts them at 24h.
    #[arg(long, env = "PRODUCER_ROTATE_AFTER", default_value = "23h30m", value_parser = parse_duration)]
    pub rotate_after: Duration,
    /// Longest make-before-break overlap before the old connection is closed anyway.
    #[arg(long, env = "PRODUCER_MAX_OVERLAP", default_value = "60s", value_parser = parse_duration)]
    pub max_overlap: Duration,
    /// During an overlap, a symbol quiet on the old connection counts as caught up after this.
    #[arg(long, env = "PRODUCER_QUIET_GRACE", default_value = "3s", value_parser = parse_duration)]
    pub quiet_grace: Duration,
    /// Reconnect when a normally trading symbol is silent this long (longer for quiet symbols).
    #[arg(long, env = "PRODUCER_WATCHDOG_SILENCE", default_value = "15s", value_parser = parse_duration)]
    pub watchdog_silence: Duration,
    /// Reconnect when the socket delivers no frame at all (Binance pings every 20s) this long.
    #[arg(long, env = "PRODUCER_SOCKET_TIMEOUT", default_value = "45s", value_parser = parse_duration)]
    pub socket_timeout: Duration,
    /// Wait this long before backfilling a gap (reordered frames and overlaps fill most).
    #[arg(long, env = "PRODUCER_GAP_GRACE", default_value = "2s", value_parser = parse_duration)]
    pub gap_grace: Duration,
    /// Sit out HTTP 418 bans up to this long inside one backfill fetch; a longer ban puts the
    /// chunk back, open, until the ban is over.
    #[arg(long, env = "PRODUCER_MAX_BAN_WAIT", default_value = "5m", value_parser = parse_duration)]
    pub max_ban_wait: Duration,
    /// First wait before a backfill chunk that failed for a passing reason (429, 5xx, a ban, a
    /// mangled body) is fetched again; doubles while REST keeps failing, up to 20 times this.
    #[arg(long, env = "PRODUCER_BACKFILL_RETRY", default_value = "30s", value_parser = parse_duration)]
    pub backfill_retry: Duration,
    /// First reconnect delay (before jitter).
    #[arg(long, env = "PRODUCER_RECONNECT_MIN", default_value = "250ms", value_parser = parse_duration)]
    pub reconnect_min: Duration,
    /// Longest reconnect delay (before jitter).
    #[arg(long, env = "PRODUCER_RECONNECT_MAX", default_value = "30s", value_parser = parse_duration)]
    pub reconnect_max: Duration,
    /// Connection attempts per 5 minutes at most (Binance allows 300 per IP).
    #[arg(long, env = "PRODUCER_MAX_ATTEMPTS", default_value_t = crate::reconnect::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// From SIGTERM, how long to backfill open gaps and flush queued trades before giving up
    /// (and reporting what is left); the container's stop timeout must be longer.
    #[arg(long, env = "PRODUCER_SHUTDOWN_DEADLINE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_deadline: Duration,
    /// File keeping the resume point per symbol (the highest trade id up to which everything was
    /// published), so a restarted producer backfills the trades of its downtime. Put it on a
    /// disk that survives restarts. Unset: each run starts at the exchange's latest id, and what
    /// traded while the producer was down is only recovered by the daily batch. Empty: none
    /// (a flag overriding an environment that sets one).
    #[arg(long, env = "PRODUCER_STATE_FILE")]
    pub state_file: Option<String>,
    /// How often the state file is rewritten (when the resume point moved).
    #[arg(long, env = "PRODUCER_STATE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub state_interval: Duration,
    /// Backfill at most this many ids per symbol after a restart; an older resume point becomes
    /// a gap record (reason resume_too_old) for the rest. 1,000,000 is ~8 h of BTCUSDT.
    #[arg(long, env = "PRODUCER_MAX_RESUME_IDS", default_value_t = 1_000_000)]
    pub max_resume_ids: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn duration_flags_take_the_shared_syntax() {
        let cli = Cli::try_parse_from([
            "producer",
            "--batch-delay",
            "250ms",
            "--max-overlap",
            "90",
            "--max-ban-wait",
            "2m10s",
        ])
        .unwrap();
        assert_eq!(cli.run.batch_delay, Duration::from_millis(250));
        assert_eq!(cli.run.max_overlap, Duration::from_secs(90));
        assert_eq!(cli.run.max_ban_wait, Duration::from_secs(130));
        // Days are refused, as the producer's own parser refused them.
        for bad in ["10 parsecs", "5x", "5d"] {
            let e = Cli::try_parse_from(["producer", &format!("--gap-grace={bad}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--gap-grace") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn cli_is_consistent_and_run_is_the_default() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["producer", "--symbols", "btcusdt,ARBUSDT"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.symbols, vec!["btcusdt", "ARBUSDT"]);
        assert_eq!(cli.run.rotate_after, Duration::from_secs(84_600));
        let cli = Cli::try_parse_from(["producer", "decode", "--time-unit", "us"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Decode(DecodeArgs {
                time_unit: FrameTimeUnit::Us
            }))
        ));
    }

    #[test]
    fn an_empty_state_file_flag_overrides_the_environment_and_means_none() {
        let cli = Cli::try_parse_from(["producer", "--project", "p", "--state-file="]).unwrap();
        assert_eq!(cli.run.state_file.as_deref(), Some(""));
        let settings = crate::settings::Settings::from_args(&cli.run).unwrap();
        assert_eq!(settings.state_file, None);
        let cli = Cli::try_parse_from(["producer", "--project", "p", "--state-file", "/x/r.json"])
            .unwrap();
        let settings = crate::settings::Settings::from_args(&cli.run).unwrap();
        assert_eq!(settings.state_file, Some("/x/r.json".into()));
        assert_eq!(settings.max_resume_ids, 1_000_000);
    }

    #[test]
    fn the_pubsub_endpoint_flag_parses_and_help_still_names_its_variable() {
        let cli = Cli::try_parse_from(["producer", "--pubsub-endpoint", "http://127.0.0.1:8085"])
            .unwrap();
        assert_eq!(
            cli.run.pubsub.pubsub_endpoint.as_deref(),
            Some("http://127.0.0.1:8085")
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--pubsub-endpoint"), "{help}");
        assert!(help.contains("PUBSUB_ENDPOINT"), "{help}");
    }

    #[test]
    fn help_names_the_environment_variables() {
        let help = Cli::command().render_long_help().to_string();
        for env in [
            "GCP_PROJECT",
            "PUBSUB_ENDPOINT",
            "TRADE_TOPIC",
            "GAP_TOPIC",
            "SYMBOLS",
            "BINANCE_WS_URL",
            "BINANCE_REST_URL",
            "METRICS_ADDR",
            "LOG_FORMAT",
        ] {
            assert!(help.contains(env), "{env} missing from --help");
        }
    }
}
