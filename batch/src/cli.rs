//! The command line: one struct, every flag documented, every flag with an environment fallback
//! (the names the whole pipeline shares), defaults defined once, validated before any I/O.

use clap::{Args, Parser, Subcommand};
use service::symbols::DEFAULT_SYMBOLS;
use trade_proto::rules::parse_symbol_list;

use crate::backfill::{
    DEFAULT_MAX_DAYS, DEFAULT_MAX_WEIGHT_PER_MINUTE, MAX_WEIGHT_PER_MINUTE, MIN_WEIGHT_PER_MINUTE,
};
use crate::day::{Day, DayError, parse_instant_us};
use crate::klines::Interval;

/// The daily batch of the binance-gcp-pipeline.
#[derive(Debug, Parser)]
#[command(
    name = "batch",
    version = build_info::VERSION,
    about = "Daily batch of the Binance pipeline: klines, symbol history (SCD type 2), checks and trade reconciliation in BigQuery",
    long_about = "Daily batch of the Binance pipeline.\n\n\
        Per symbol, for one UTC day: `symbols` keeps the symbol metadata from Binance's exchangeInfo \
        in dwh.symbols with a type-2 history in scd.symbols_history; `klines` loads the day's \
        1-minute klines from Binance's REST API into dwh.klines_<symbol>, replacing that day (a \
        rerun changes nothing); `check` fails unless the day is complete and sane and market.trades \
        holds exactly the day's trade ids; `reconcile` fetches the trade ids missing from \
        market.trades and appends them. `backfill` loads klines (and with --trades, the missing \
        trade ids) for a bounded range of days, resumably, within a REST weight budget of its \
        own: the explicit way to load days the DAG does not schedule, those before its start \
        date (PIPELINE_START_DATE). `history` loads a symbol's trades from Binance's public \
        archive (data.binance.vision) with source = archive, fills the archive's holes over REST \
        and records each day's completeness in market.coverage.\n\n\
        Every flag can also be set by the environment variable shown. Against the local emulators, \
        set BIGQUERY_ENDPOINT and BIGQUERY_GRPC_ENDPOINT (anonymous credentials are then used); \
        without them, Application Default Credentials and Google Cloud.\n\n\
        Example: batch --project my-proj klines --date 2026-01-31 --symbols BTCUSDT,ARBUSDT",
    after_help = "Exit status: 0 on success, 1 on any failure (a failed check names symbol, date and problem), 2 on bad usage.",
    // The shared BigQuery flags are not global by themselves; like every batch flag they may
    // come before or after the command.
    mut_arg("bigquery_endpoint", |a| a.global(true)),
    mut_arg("bigquery_grpc_endpoint", |a| a.global(true))
)]
pub struct Cli {
    /// Settings shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Google Cloud project that owns the datasets.
    #[arg(long, env = "GCP_PROJECT", global = true)]
    pub project: Option<String>,
    /// `--bigquery-endpoint` / `--bigquery-grpc-endpoint` (emulator; unset: Google Cloud).
    #[command(flatten)]
    pub bigquery: service::gcp::BigQueryFlags,
    /// Symbols to process, comma-separated, upper case.
    #[arg(long, env = "SYMBOLS", global = true, default_value = DEFAULT_SYMBOLS, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Binance REST base URL (api.binance.com: the data-api host does not serve historicalTrades).
    #[arg(
        long,
        env = "BINANCE_REST_URL",
        global = true,
        default_value = "https://api.binance.com"
    )]
    pub binance_rest_url: String,
    /// Dataset of real-time trades (trades_raw, the trades view).
    #[arg(
        long,
        env = "BQ_MARKET_DATASET",
        global = true,
        default_value = "market"
    )]
    pub market_dataset: String,
    /// Dataset of the warehouse tables (klines_<symbol>, symbols).
    #[arg(long, env = "BQ_DWH_DATASET", global = true, default_value = "dwh")]
    pub dwh_dataset: String,
    /// Dataset of the slowly-changing-dimension history (symbols_history).
    #[arg(long, env = "BQ_SCD_DATASET", global = true, default_value = "scd")]
    pub scd_dataset: String,
    /// Log format: json (one object per line, for Cloud Logging) or text.
    #[arg(
        long,
        env = "LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "json"
    )]
    pub log_format: logging::Format,
    /// Symbols (or days, in backfill) worked on at the same time. Binance's weight budget is
    /// shared by all of them.
    #[arg(long, env = "BATCH_CONCURRENCY", global = true, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub concurrency: u16,
    /// Where to serve /healthz and Prometheus /metrics (REST weight used) while the batch runs.
    /// A port already in use only logs a warning: parallel runs on one host must not fail.
    #[arg(
        long,
        env = "METRICS_ADDR",
        global = true,
        default_value = "0.0.0.0:9102"
    )]
    pub metrics_addr: std::net::SocketAddr,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the datasets and tables (from Terraform's schema files) if missing. For local runs;
    /// in Google Cloud, Terraform creates them.
    Setup,
    /// Load every kline of a UTC day into dwh.klines_<symbol>, replacing that day.
    Klines {
        /// The UTC day, YYYY-MM-DD; it must have ended.
        #[arg(long, value_parser = parse_day)]
        date: Day,
        /// Kline interval; the warehouse tables hold 1m.
        #[arg(long, default_value = "1m", value_parser = Interval::parse)]
        interval: Interval,
    },
    /// Read exchangeInfo into dwh.symbols and record changes in scd.symbols_history (type 2).
    Symbols {
        /// When the versions become valid (RFC 3339 UTC, e.g. 2026-01-31T00:00:00Z); default now.
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<i64>,
    },
    /// Fail unless each symbol's day is complete and sane and market.trades holds its trade ids.
    Check {
        /// The UTC day, YYYY-MM-DD.
        #[arg(long, value_parser = parse_day)]
        date: Day,
        /// Kline interval of the tables.
        #[arg(long, default_value = "1m", value_parser = Interval::parse)]
        interval: Interval,
        /// Check the klines only, not market.trades (e.g. when the real-time path is not running).
        #[arg(long, env = "BATCH_SKIP_TRADES")]
        skip_trades: bool,
    },
    /// Fetch the trade ids of a day missing from market.trades (historicalTrades) and append
    /// them to market.trades_raw with source = batch.
    Reconcile {
        /// The UTC day, YYYY-MM-DD.
        #[arg(long, value_parser = parse_day)]
        date: Day,
    },
    /// Load a symbol's trades from Binance's public archive (data.binance.vision) into
    /// market.trades_raw with source = archive, one daily (or --monthly) file at a time.
    ///
    /// Each file's .CHECKSUM is verified (a mismatch or unreadable zip is downloaded once
    /// more, then refused); only ids market.trades lacks are appended. Holes (missing or
    /// refused files, seams, up to the live stream's first id) are filled from REST
    /// historicalTrades within --max-rest-weight, the rest written to market.gaps. Every day
    /// of the range gets a row in market.coverage (complete, holes, missing). Files whose days
    /// coverage already says complete are skipped: a rerun downloads nothing.
    ///
    /// As a Cloud Run job with N tasks, task i takes files i, i+N, ... (CLOUD_RUN_TASK_INDEX,
    /// CLOUD_RUN_TASK_COUNT); holes are then judged by a later run with one task.
    #[command(verbatim_doc_comment)]
    History {
        /// The symbol, e.g. BTCUSDT.
        #[arg(long, value_parser = parse_symbol)]
        symbol: String,
        /// First UTC day (default: the day of the symbol's first trade, from historicalTrades
        /// fromId=0).
        #[arg(long, value_parser = parse_day)]
        from: Option<Day>,
        /// Last UTC day, included (default: yesterday; it must have ended).
        #[arg(long, value_parser = parse_day)]
        to: Option<Day>,
        /// Whole months (published a week after they end) as one monthly file each.
        #[arg(long)]
        monthly: bool,
        /// Archive host.
        #[arg(long, env = "BINANCE_ARCHIVE_URL", default_value = binance::archive::DEFAULT_ARCHIVE_URL)]
        archive_url: String,
        /// Most REST request weight spent filling holes (historicalTrades: 25 per 1000 ids).
        #[arg(long, default_value_t = crate::history::DEFAULT_MAX_REST_WEIGHT)]
        max_rest_weight: u64,
        /// This task's index (Cloud Run sets it); default 0.
        #[arg(long, env = "CLOUD_RUN_TASK_INDEX", hide = true)]
        task_index: Option<String>,
        /// Number of tasks (Cloud Run sets it); default 1.
        #[arg(long, env = "CLOUD_RUN_TASK_COUNT", hide = true)]
        task_count: Option<String>,
    },
    /// Load klines, and with --trades the trade ids missing from market.trades, for every day
    /// from --from to --to (both included): the explicit way to load days the DAG does not
    /// schedule (those before its start date, PIPELINE_START_DATE / Terraform's go_live_date).
    ///
    /// Bounded: more than --max-days days (31) is refused unless --max-days says more. Gentle:
    /// the backfill spends at most --max-weight-per-minute of Binance's REST weight per minute
    /// (counting its own requests, and Binance's X-MBX-USED-WEIGHT-1M for its IP when that is
    /// higher), and prints the weight it used each minute. Resumable: days whose klines are
    /// complete are skipped unless --force, and only trade ids still missing are fetched, so
    /// rerunning the same command continues where it stopped.
    ///
    /// Cost: klines are 2 requests of weight 2 per symbol-day; trades are weight 25 per 1000
    /// (historicalTrades): a BTCUSDT day (~3 M trades) is ~75,000 weight, about 50 minutes at
    /// the default 1500 per minute. In Google Cloud, run it as an execution of the batch job
    /// (it leaves from the batch's own NAT address, not the producer's):
    /// gcloud run jobs execute binance-batch --region REGION --task-timeout 6h --wait
    /// --args=backfill,--from,2026-02-01,--to,2026-02-07,--trades
    #[command(verbatim_doc_comment)]
    Backfill {
        /// First UTC day.
        #[arg(long, value_parser = parse_day)]
        from: Day,
        /// Last UTC day (included); it must have ended.
        #[arg(long, value_parser = parse_day)]
        to: Day,
        /// Also fetch each day's trade ids missing from market.trades over historicalTrades and
        /// append them with source = batch (what `reconcile` does for one day).
        #[arg(long)]
        trades: bool,
        /// Refuse a range of more days than this; raise it to mean a longer range.
        #[arg(long, default_value_t = DEFAULT_MAX_DAYS, value_parser = clap::value_parser!(u32).range(1..=3660))]
        max_days: u32,
        /// Most REST request weight spent per minute (Binance allows 6000 per minute per IP; the
        /// default leaves most of the minute to anything else on the same address).
        #[arg(
            long,
            default_value_t = DEFAULT_MAX_WEIGHT_PER_MINUTE,
            value_parser = clap::value_parser!(u32).range(i64::from(MIN_WEIGHT_PER_MINUTE)..=i64::from(MAX_WEIGHT_PER_MINUTE))
        )]
        max_weight_per_minute: u32,
        /// Reload klines of days that are already complete.
        #[arg(long)]
        force: bool,
    },
}

/// A symbol of `batch history`: the one symbol rule ([`parse_symbol_list`]), exactly one.
fn parse_symbol(raw: &str) -> Result<String, String> {
    let mut list = parse_symbol_list(raw).map_err(|e| e.to_string())?;
    match (list.pop(), list.is_empty()) {
        (Some(s), true) => Ok(s),
        _ => Err(format!("{raw:?}: batch history takes one symbol")),
    }
}

fn parse_day(raw: &str) -> Result<Day, DayError> {
    raw.parse()
}

fn parse_instant(raw: &str) -> Result<i64, DayError> {
    parse_instant_us(raw)
}

/// A setting that is wrong, with why.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {why}")]
pub struct SettingError {
    setting: &'static str,
    why: String,
}

/// BigQuery dataset names: letters, digits, underscores (BigQuery "Naming datasets"), which also
/// makes them safe inside backquoted SQL identifiers.
pub fn validate_identifier(setting: &'static str, v: &str) -> Result<(), SettingError> {
    if v.is_empty() || v.len() > 1024 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(SettingError {
            setting,
            why: format!("{v:?} must be letters, digits and underscores"),
        });
    }
    Ok(())
}

impl Global {
    /// Checks every setting before any I/O; returns the normalised symbol list.
    pub fn validate(&self) -> Result<Vec<String>, SettingError> {
        let project = self.project.as_deref().unwrap_or("");
        if project.is_empty()
            || !project.bytes().all(|b| {
                b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' || b == b':'
            })
        {
            return Err(SettingError {
                setting: "--project / GCP_PROJECT",
                why: format!("{project:?}: set it to the Google Cloud project id"),
            });
        }
        validate_identifier("--market-dataset / BQ_MARKET_DATASET", &self.market_dataset)?;
        validate_identifier("--dwh-dataset / BQ_DWH_DATASET", &self.dwh_dataset)?;
        validate_identifier("--scd-dataset / BQ_SCD_DATASET", &self.scd_dataset)?;
        // clap splits at the commas (and collects repeated flags); the list rule is one.
        let symbols = parse_symbol_list(&self.symbols.join(",")).map_err(|e| SettingError {
            setting: "--symbols / SYMBOLS",
            why: e.to_string(),
        })?;
        for s in &symbols {
            // Stricter than Binance's rule: each symbol names a table, dwh.klines_<symbol>, and
            // BigQuery table names take no `.`; the warehouse keeps to letters and digits.
            if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(SettingError {
                    setting: "--symbols / SYMBOLS",
                    why: format!(
                        "{s:?} cannot name a table dwh.klines_<symbol> (letters and digits only)"
                    ),
                });
            }
        }
        self.bigquery.check().map_err(|why| SettingError {
            setting: "--bigquery-endpoint / --bigquery-grpc-endpoint",
            why,
        })?;
        Ok(symbols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_contract_commands() {
        let cli = Cli::try_parse_from([
            "batch",
            "--project",
            "p",
            "klines",
            "--date",
            "2026-01-31",
            "--symbols",
            "btcusdt,ARBUSDT",
        ])
        .unwrap();
        assert_eq!(cli.global.validate().unwrap(), vec!["BTCUSDT", "ARBUSDT"]);
        assert!(
            matches!(cli.command, Command::Klines { interval, .. } if interval == Interval::MINUTE)
        );
        let cli = Cli::try_parse_from(["batch", "check", "--date", "2026-01-31", "--skip-trades"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Check {
                skip_trades: true,
                ..
            }
        ));
    }

    #[test]
    fn backfill_is_bounded_and_has_its_own_budget() {
        let cli = Cli::try_parse_from([
            "batch",
            "backfill",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-31",
        ])
        .unwrap();
        let Command::Backfill {
            trades,
            max_days,
            max_weight_per_minute,
            force,
            ..
        } = cli.command
        else {
            panic!("not backfill");
        };
        assert_eq!(
            (trades, max_days, max_weight_per_minute, force),
            (false, 31, 1500, false)
        );
        let cli = Cli::try_parse_from([
            "batch",
            "backfill",
            "--from",
            "2025-01-01",
            "--to",
            "2025-12-31",
            "--trades",
            "--max-days",
            "365",
            "--max-weight-per-minute",
            "600",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Backfill {
                trades: true,
                max_days: 365,
                max_weight_per_minute: 600,
                ..
            }
        ));
        // A budget above what the daily commands allow themselves, or too small for one
        // historicalTrades page pair, is refused by name.
        for bad in ["5401", "6000", "49", "0"] {
            let e = Cli::try_parse_from([
                "batch",
                "backfill",
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-02",
                "--max-weight-per-minute",
                bad,
            ])
            .unwrap_err();
            assert!(e.to_string().contains("--max-weight-per-minute"), "{e}");
        }
    }

    #[test]
    fn history_takes_one_symbol_and_optional_days() {
        let cli = Cli::try_parse_from(["batch", "history", "--symbol", "btcusdt"]).unwrap();
        let Command::History {
            symbol,
            from,
            to,
            monthly,
            archive_url,
            max_rest_weight,
            ..
        } = cli.command
        else {
            panic!("not history");
        };
        assert_eq!(symbol, "BTCUSDT");
        assert_eq!((from, to, monthly), (None, None, false));
        assert_eq!(max_rest_weight, crate::history::DEFAULT_MAX_REST_WEIGHT);
        // The environment may set it; without, Binance's host.
        if std::env::var_os("BINANCE_ARCHIVE_URL").is_none() {
            assert_eq!(archive_url, "https://data.binance.vision");
        }
        let cli = Cli::try_parse_from([
            "batch",
            "history",
            "--symbol",
            "ARBUSDT",
            "--from",
            "2024-01-01",
            "--to",
            "2024-03-31",
            "--monthly",
            "--archive-url",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::History { monthly: true, from: Some(f), .. } if f.to_string() == "2024-01-01"
        ));
        // The one symbol rule, and exactly one symbol.
        for bad in ["BTC/USDT", "BTCUSDT,ARBUSDT", ""] {
            let e = Cli::try_parse_from(["batch", "history", "--symbol", bad]).unwrap_err();
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let e = Cli::try_parse_from(["batch", "klines", "--date", "2026-02-30"]).unwrap_err();
        assert!(e.to_string().contains("2026-02-30"), "{e}");
        let cli = Cli::try_parse_from(["batch", "--project", "p", "--dwh-dataset", "a.b", "setup"])
            .unwrap();
        assert!(
            cli.global
                .validate()
                .unwrap_err()
                .to_string()
                .contains("BQ_DWH_DATASET")
        );
        for bad in [
            "BTC'USDT",
            "BTC.USDT",
            "BTC-USDT",
            "BTCUSDT,btcusdt",
            "BTCUSDT,,ARBUSDT",
        ] {
            let cli = Cli::try_parse_from(["batch", "--project", "p", "--symbols", bad, "setup"])
                .unwrap();
            let e = cli.global.validate().unwrap_err().to_string();
            let entry = bad.rsplit(',').next().unwrap();
            assert!(e.contains("SYMBOLS") && e.contains(entry), "{e}");
        }
    }

    #[test]
    fn bigquery_endpoints_are_global_and_set_together() {
        let cli = Cli::try_parse_from([
            "batch",
            "--project",
            "p",
            "setup",
            "--bigquery-endpoint",
            "http://127.0.0.1:9050",
            "--bigquery-grpc-endpoint",
            "127.0.0.1:9060",
        ])
        .unwrap();
        assert!(cli.global.validate().is_ok());
        assert_eq!(
            cli.global.bigquery.bigquery_grpc_endpoint.as_deref(),
            Some("127.0.0.1:9060")
        );
        let cli = Cli::try_parse_from([
            "batch",
            "--bigquery-endpoint",
            "http://127.0.0.1:9050",
            "--project",
            "p",
            "setup",
        ])
        .unwrap();
        let e = cli.global.validate().unwrap_err().to_string();
        assert!(e.contains("--bigquery-grpc-endpoint"), "{e}");
    }
}
