//! `binance-sim`: run the Binance simulator as a process.
//!
//! A thin wrapper over the library: flags (each with a `SIM_*` environment fallback) become a
//! [`SimConfig`]; the bound address is printed on stdout as `binance-sim listening on ADDR` so
//! scripts can read the port; SIGTERM or Ctrl-C shuts down cleanly.

use std::time::Duration;

use anyhow::Context;
use binance_sim::{FaultSettings, Sim, SimConfig, SymbolSpec, parse_rates};
use clap::Parser;

/// A local Binance spot exchange for tests: deterministic trade streams
/// (`/ws/<stream>`, `/stream?streams=`), REST market data (`/api/v3/klines`, `trades`,
/// `historicalTrades`, `aggTrades`, `exchangeInfo`, `ticker/24hr`), Binance's limits, fault
/// injection and ground truth (`/admin/...`, see sim/README.md).
///
/// The trade tape is a pure function of the seed and the symbol settings: run twice with the
/// same flags and the same trade ids carry the same prices, sizes and times.
#[derive(Debug, Parser)]
#[command(name = "binance-sim", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 = any free port; the chosen one is printed).
    #[arg(long, env = "SIM_PORT", default_value_t = 9443)]
    port: u16,
    /// Seed of the tape: same seed, same trades.
    #[arg(long, env = "SIM_SEED", default_value_t = 42)]
    seed: u64,
    /// Symbols to serve (known: BTCUSDT, AAVEUSDT, STXUSDT, ARBUSDT; others get generic settings).
    #[arg(
        long,
        env = "SIM_SYMBOLS",
        value_delimiter = ',',
        default_value = service::symbols::DEFAULT_SYMBOLS
    )]
    symbols: Vec<String>,
    /// Average trades per second per symbol, e.g. `BTCUSDT=35,AAVEUSDT=3`; unknown symbols are added.
    #[arg(long, env = "SIM_RATES")]
    rates: Option<String>,
    /// Multiply every rate (load tests: 2300 gives about 100,000 trades/s in total).
    #[arg(long, env = "SIM_RATE_MULTIPLIER", default_value_t = 1.0)]
    rate_multiplier: f64,
    /// Tape time at start-up in ms since the epoch (default: the wall clock).
    #[arg(long, env = "SIM_START_TIME_MS")]
    start_time_ms: Option<i64>,
    /// Tape clock speed (1 = real time; 60 = a tape minute per second).
    #[arg(long, env = "SIM_CLOCK_SPEED", default_value_t = 1.0)]
    clock_speed: f64,
    /// Days of history before start-up (genesis); REST serves trades and klines from then on.
    #[arg(long, env = "SIM_HISTORY_DAYS", default_value_t = 40)]
    history_days: u32,
    /// Genesis in ms since the epoch (overrides --history-days).
    #[arg(long, env = "SIM_GENESIS_MS")]
    genesis_ms: Option<i64>,
    /// Multiply every rate before start-up only (small trade-archive days: e.g. 0.01).
    #[arg(long, env = "SIM_HISTORY_RATE_MULTIPLIER", default_value_t = 1.0)]
    history_rate_multiplier: f64,
    /// Server ping interval in seconds (Binance: 20).
    #[arg(long, env = "SIM_PING_INTERVAL_SECS", default_value_t = 20.0)]
    ping_interval_secs: f64,
    /// Disconnect when a ping is unanswered this many seconds (Binance: 60).
    #[arg(long, env = "SIM_PONG_TIMEOUT_SECS", default_value_t = 60.0)]
    pong_timeout_secs: f64,
    /// Close connections at this age in seconds (Binance: 86400).
    #[arg(long, env = "SIM_MAX_CONNECTION_AGE_SECS", default_value_t = 86_400.0)]
    max_connection_age_secs: f64,
    /// Incoming messages per second per connection before disconnect (Binance: 5).
    #[arg(long, env = "SIM_MAX_INCOMING_PER_SEC", default_value_t = 5)]
    max_incoming_per_sec: u32,
    /// Streams per connection (Binance: 1024).
    #[arg(long, env = "SIM_MAX_STREAMS", default_value_t = 1024)]
    max_streams: usize,
    /// Connection attempts per IP per 5 minutes (Binance: 300).
    #[arg(long, env = "SIM_CONNECTION_ATTEMPTS", default_value_t = 300)]
    connection_attempts: u32,
    /// REST request weight per IP per minute (Binance: 6000).
    #[arg(long, env = "SIM_WEIGHT_LIMIT", default_value_t = 6000)]
    weight_limit: u32,
    /// Requests answered 429 in one minute before the IP is banned with 418.
    #[arg(long, env = "SIM_BAN_AFTER_429S", default_value_t = 10)]
    ban_after_429s: u32,
    /// Length of a 418 ban in seconds (Binance: 2 minutes to 3 days).
    #[arg(long, env = "SIM_BAN_SECS", default_value_t = 120.0)]
    ban_secs: f64,
    /// Seconds between a `serverShutdown` event and the disconnect.
    #[arg(long, env = "SIM_SHUTDOWN_GRACE_SECS", default_value_t = 30.0)]
    shutdown_grace_secs: f64,
    /// Fault: drop a random connection every N seconds on average (0 = off).
    #[arg(long, env = "SIM_DROP_RANDOM_EVERY_SECS", default_value_t = 0.0)]
    drop_random_every_secs: f64,
    /// Fault: share of trade frames sent malformed.
    #[arg(long, env = "SIM_MALFORMED_RATIO", default_value_t = 0.0)]
    malformed_ratio: f64,
    /// Fault: share of trade frames sent twice.
    #[arg(long, env = "SIM_DUPLICATE_RATIO", default_value_t = 0.0)]
    duplicate_ratio: f64,
    /// Fault: share of trade frames sent out of order.
    #[arg(long, env = "SIM_REORDER_RATIO", default_value_t = 0.0)]
    reorder_ratio: f64,
    /// Fault: answer HTTP 451 (restricted location) to everything.
    #[arg(long, env = "SIM_GEO_BLOCK", default_value_t = false)]
    geo_block: bool,
    /// Log format.
    #[arg(long, env = "SIM_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: logging::Format,
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{name} {v} is not a valid duration"))
}

fn config(a: &Args) -> anyhow::Result<SimConfig> {
    let mut c = SimConfig {
        seed: a.seed,
        symbols: trade_proto::rules::parse_symbol_list(&a.symbols.join(","))
            .context("--symbols / SIM_SYMBOLS")?
            .iter()
            .map(|s| SymbolSpec::for_symbol(s))
            .collect(),
        rate_multiplier: a.rate_multiplier,
        start_time_ms: a.start_time_ms,
        clock_speed: a.clock_speed,
        genesis_ms: a.genesis_ms,
        history_days: a.history_days,
        history_rate_multiplier: a.history_rate_multiplier,
        ping_interval: secs("ping-interval-secs", a.ping_interval_secs)?,
        pong_timeout: secs("pong-timeout-secs", a.pong_timeout_secs)?,
        max_connection_age: secs("max-connection-age-secs", a.max_connection_age_secs)?,
        max_incoming_per_sec: a.max_incoming_per_sec,
        max_streams: a.max_streams,
        connection_attempts: a.connection_attempts,
        weight_limit: a.weight_limit,
        ban_after_429s: a.ban_after_429s,
        ban_duration: secs("ban-secs", a.ban_secs)?,
        server_shutdown_grace: secs("shutdown-grace-secs", a.shutdown_grace_secs)?,
        faults: FaultSettings {
            drop_random_every_secs: a.drop_random_every_secs,
            malformed_ratio: a.malformed_ratio,
            duplicate_ratio: a.duplicate_ratio,
            reorder_ratio: a.reorder_ratio,
            geo_block: a.geo_block,
            ..FaultSettings::default()
        },
        ..SimConfig::default()
    };
    if let Some(r) = &a.rates {
        c.apply_rates(&parse_rates(r)?);
    }
    c.validate()?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    logging::init(args.log_format, "binance-sim");
    let cfg = config(&args).context("invalid configuration")?;
    let addr = format!("{}:{}", args.host, args.port);
    let sim = Sim::start(cfg, &addr)
        .await
        .with_context(|| format!("starting the simulator on {addr}"))?;
    println!("binance-sim listening on {}", sim.addr());
    service::shutdown::signalled().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_valid_config() {
        let a = Args::parse_from([
            "binance-sim",
            "--port",
            "0",
            "--rates",
            "BTCUSDT=100,DOGEUSDT=2",
            "--pong-timeout-secs",
            "1.5",
        ]);
        let c = config(&a).unwrap();
        assert_eq!(c.symbols[0].trades_per_sec, 100.0);
        assert_eq!(c.symbols.last().unwrap().symbol, "DOGEUSDT");
        assert_eq!(c.pong_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn bad_flags_name_the_setting() {
        let a = Args::parse_from(["binance-sim", "--malformed-ratio", "2"]);
        let e = format!("{:#}", config(&a).unwrap_err());
        assert!(e.contains("malformed_ratio"), "{e}");
    }
}
