//! The `tap` flags, each with its environment fallback (the names every component uses), and the
//! Pub/Sub subscription filter they make.

use clap::{Parser, ValueEnum};
use trade_proto::Source;

/// Shown after the flags in `--help`.
const EXAMPLES: &str = "\
Examples:
  # Live BTCUSDT trades from the cloud topic, as a table, until Ctrl-C:
  tap --project my-project --symbol BTCUSDT --format table

  # Against the local Pub/Sub emulator: 20 trades of two symbols as JSON lines, duplicates removed:
  PUBSUB_ENDPOINT=http://127.0.0.1:8085 GCP_PROJECT=local-project \\
    tap --symbol BTCUSDT --symbol ARBUSDT --limit 20 --dedup

  # The same after `$(gcloud beta emulators pubsub env-init)` (it sets PUBSUB_EMULATOR_HOST):
  tap --project local-project --symbol BTCUSDT --limit 20

  # Only trades the producer fetched over REST to fill a gap:
  tap --project my-project --source backfill

What you get: one line per trade on stdout. Invalid messages go to stderr with the reason and tap
keeps going. The contract (fields, ordering, duplicates, backfills) is docs/trade-topic.md.

The subscription: unless --subscription names one, tap creates `tap-<pid>-<time>` with ordering
enabled and your filter, and deletes it when it exits (after --limit, on Ctrl-C or SIGTERM).
Every subscription tap creates is labelled created-by=tap and expires after 1 day without a
reader (Pub/Sub's minimum), so a crashed tap leaves nothing behind for long.
A new subscription only receives trades published after it was created. The Pub/Sub emulator
stores filters but does not apply them: tap checks --symbol and --source again on its side (a raw
--filter it cannot check). tap acknowledges every message it receives, so on an existing
subscription it takes them away from its owner: tap refuses the pipeline's own subscriptions
(binance-trades-bq, binance-gaps-bq, binance-trades-dead-letter-sub) and any existing one it did
not create, unless --attach-existing.
Credentials: on Google Cloud, Application Default Credentials (gcloud auth application-default
login); with --pubsub-endpoint or PUBSUB_EMULATOR_HOST, none (the emulator).";

/// Tap the trade topic: print the Binance trades the pipeline publishes, decoded, as they arrive.
#[derive(Debug, Clone, Parser)]
#[command(name = "tap", version, after_help = EXAMPLES)]
pub struct Args {
    /// Google Cloud project that owns the topic (with the emulator, any name, e.g. local-project).
    #[arg(long, env = "GCP_PROJECT")]
    pub project: String,

    #[command(flatten)]
    pub pubsub: service::gcp::PubSubFlags,

    /// The trade topic (short name).
    #[arg(long, env = "TRADE_TOPIC", default_value = "binance-trades")]
    pub topic: String,

    /// Only this symbol (repeat for several); becomes the filter `attributes.symbol = "BTCUSDT"`.
    #[arg(long = "symbol", value_name = "SYMBOL", value_parser = parse_symbol)]
    pub symbols: Vec<String>,

    /// Only trades from this source: stream, backfill, batch or archive (`attributes.source = "..."`).
    #[arg(long, value_parser = parse_source)]
    pub source: Option<Source>,

    /// A raw Pub/Sub filter instead of --symbol/--source, e.g. 'hasPrefix(attributes.symbol, "BTC")'.
    #[arg(long, conflicts_with_all = ["symbols", "source"])]
    pub filter: Option<String>,

    /// Use this subscription (short name) instead of a temporary one; created if missing.
    /// tap deletes it on exit only if it created it (and --keep is not given). An existing one
    /// is reused only if tap created it (label created-by=tap), unless --attach-existing.
    #[arg(long)]
    pub subscription: Option<String>,

    /// Attach to an existing subscription tap did not create, even one of the pipeline's own.
    /// tap acks every message it receives: their owner never gets them (the consumer's
    /// trades then never reach BigQuery).
    #[arg(long, requires = "subscription")]
    pub attach_existing: bool,

    /// Do not delete the subscription tap created (so you can come back to it).
    #[arg(long)]
    pub keep: bool,

    /// Output: json (one JSON object per line, the proto's field names) or table.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Stop after printing this many trades.
    #[arg(long)]
    pub limit: Option<u64>,

    /// Seek the subscription to now first: skip its backlog (useful with --subscription).
    #[arg(long)]
    pub from_now: bool,

    /// Print each (symbol, trade_id) once, the documented de-duplication rule.
    #[arg(long)]
    pub dedup: bool,
}

/// How trades are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// A header and one aligned row per trade.
    Table,
}

fn parse_symbol(raw: &str) -> Result<String, String> {
    use trade_proto::rules::{SYMBOL_PATTERN, is_symbol, normalise_symbol};
    if is_symbol(raw) {
        Ok(raw.to_owned())
    } else if let Some(upper) = normalise_symbol(raw) {
        // Attribute filters match exactly, so a lower-case symbol would silently match nothing.
        Err(format!(
            "{raw:?} is not upper case; Binance symbols are, e.g. {upper:?}"
        ))
    } else {
        Err(format!(
            "{raw:?} is not a Binance symbol ({SYMBOL_PATTERN}, e.g. \"BTCUSDT\")"
        ))
    }
}

fn parse_source(raw: &str) -> Result<Source, String> {
    raw.parse()
        .map_err(|e: trade_proto::UnknownSource| e.to_string())
}

impl Args {
    /// The subscription filter these flags ask for, or `None` for every message.
    pub fn subscription_filter(&self) -> Option<String> {
        if let Some(raw) = &self.filter {
            return Some(raw.clone());
        }
        build_filter(&self.symbols, self.source)
    }
}

/// `(attributes.symbol = "A" OR attributes.symbol = "B") AND attributes.source = "backfill"`.
/// Symbols are validated by [`Args`], so they need no escaping.
pub fn build_filter(symbols: &[String], source: Option<Source>) -> Option<String> {
    let mut parts = Vec::new();
    match symbols {
        [] => {}
        [one] => parts.push(format!("attributes.symbol = \"{one}\"")),
        many => {
            let any: Vec<String> = many
                .iter()
                .map(|s| format!("attributes.symbol = \"{s}\""))
                .collect();
            parts.push(format!("({})", any.join(" OR ")));
        }
    }
    if let Some(source) = source {
        parts.push(format!("attributes.source = \"{source}\""));
    }
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use rstest::rstest;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["tap", "--project", "p"];
        all.extend_from_slice(args);
        Args::try_parse_from(all)
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[rstest]
    #[case::nothing(&[], None)]
    #[case::one_symbol(&["--symbol", "BTCUSDT"], Some(r#"attributes.symbol = "BTCUSDT""#))]
    #[case::two_symbols(
        &["--symbol", "BTCUSDT", "--symbol", "ARBUSDT"],
        Some(r#"(attributes.symbol = "BTCUSDT" OR attributes.symbol = "ARBUSDT")"#)
    )]
    #[case::symbol_and_source(
        &["--symbol", "STXUSDT", "--source", "backfill"],
        Some(r#"attributes.symbol = "STXUSDT" AND attributes.source = "backfill""#)
    )]
    #[case::raw(&["--filter", "hasPrefix(attributes.symbol, \"BTC\")"], Some("hasPrefix(attributes.symbol, \"BTC\")"))]
    fn flags_make_the_filter(#[case] args: &[&str], #[case] want: Option<&str>) {
        assert_eq!(parse(args).unwrap().subscription_filter().as_deref(), want);
    }

    #[test]
    fn symbols_follow_the_contracts_rule() {
        // The same grammar the producer publishes and the consumer accepts: - _ . included.
        assert_eq!(parse_symbol("BTC-USDT").as_deref(), Ok("BTC-USDT"));
        assert!(
            parse_symbol("ABCDEFGHIJKLMNOPQRSTU")
                .unwrap_err()
                .contains("^[A-Z0-9-_.]{1,20}$")
        );
    }

    #[rstest]
    #[case::lower_case(&["--symbol", "btcusdt"], "not upper case")]
    #[case::quote(&["--symbol", "BTC\"USDT"], "not a Binance symbol")]
    #[case::empty(&["--symbol", ""], "not a Binance symbol")]
    #[case::unknown_source(&["--source", "replay"], "unknown trade source")]
    #[case::filter_and_symbol(&["--filter", "x", "--symbol", "BTCUSDT"], "cannot be used with")]
    #[case::format(&["--format", "csv"], "invalid value 'csv'")]
    #[case::attach_without_name(&["--attach-existing"], "--subscription")]
    fn bad_flags_are_rejected_with_the_reason(#[case] args: &[&str], #[case] want: &str) {
        let err = parse(args).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }

    #[test]
    fn the_topic_defaults_to_the_shared_name() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.topic, "binance-trades");
        assert_eq!(args.format, Format::Json);
        assert!(!args.dedup && !args.from_now && !args.keep && !args.attach_existing);
    }
}
