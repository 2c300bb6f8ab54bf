//! Configuration of the simulator: symbols, tape parameters, limits, initial faults.
//!
//! [`SimConfig::default()`] is a realistic Binance: the four project symbols at realistic rates,
//! 40 days of history, and Binance's documented limits (each constant names its source). Tests
//! shorten the time-based limits through the public fields. [`SimConfig::validate`] is called by
//! [`crate::Sim::start`] and names the setting that is wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::decimal::{self, SCALE};
use crate::faults::FaultSettings;

/// Binance: "The WebSocket server will send a ping frame every 20 seconds."
pub const BINANCE_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Binance: "If the WebSocket server does not receive a pong frame back from the connection
/// within a minute the connection will be disconnected."
pub const BINANCE_PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Binance: "A single connection to stream.binance.com is only valid for 24 hours."
pub const BINANCE_MAX_CONNECTION_AGE: Duration = Duration::from_secs(24 * 3600);
/// Binance: "WebSocket connections have a limit of 5 incoming messages per second."
pub const BINANCE_MAX_INCOMING_PER_SEC: u32 = 5;
/// Binance: "A single connection can listen to a maximum of 1024 streams."
pub const BINANCE_MAX_STREAMS: usize = 1024;
/// Binance: "There is a limit of 300 connections per attempt every 5 minutes per IP."
pub const BINANCE_CONNECTION_ATTEMPTS: u32 = 300;
/// The window of [`BINANCE_CONNECTION_ATTEMPTS`].
pub const BINANCE_CONNECTION_ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// Binance exchangeInfo `rateLimits`: `REQUEST_WEIGHT`, 1 MINUTE, limit 6000.
pub const BINANCE_WEIGHT_LIMIT: u32 = 6000;
/// Binance bans IPs that keep sending after 429 "from 2 minutes to 3 days"; we use the floor.
pub const BINANCE_BAN_DURATION: Duration = Duration::from_secs(120);

/// Symbol statuses Binance documents for spot `exchangeInfo`.
pub const SYMBOL_STATUSES: [&str; 5] = ["TRADING", "END_OF_DAY", "HALT", "BREAK", "CANCEL_ONLY"];

/// Everything the simulator knows about one symbol: its metadata and how its tape behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSpec {
    /// Upper-case symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Base asset, e.g. `BTC`.
    pub base_asset: String,
    /// Quote asset, e.g. `USDT`.
    pub quote_asset: String,
    /// Price tick in 1e-8 units (`PRICE_FILTER.tickSize`); every tape price is a multiple.
    pub tick_size: u64,
    /// Quantity step in 1e-8 units (`LOT_SIZE.stepSize`); every tape quantity is a multiple.
    pub step_size: u64,
    /// Price at genesis; the walk mean-reverts slowly towards it.
    pub initial_price: f64,
    /// Average trades per second (before [`SimConfig::rate_multiplier`]).
    pub trades_per_sec: f64,
    /// Daily volatility of the log price (0.025 = 2.5 %).
    pub daily_volatility: f64,
    /// Median trade value in the quote asset; sets the size distribution.
    pub median_notional: f64,
    /// Trade id of the first trade at genesis.
    pub first_trade_id: u64,
    /// Aggregate-trade id of the first aggregate trade at genesis.
    pub first_agg_id: u64,
    /// `exchangeInfo` status at start.
    pub status: String,
    /// `PRICE_FILTER.minPrice` / `maxPrice` in 1e-8 units.
    pub min_price: u64,
    /// See `min_price`.
    pub max_price: u64,
    /// `LOT_SIZE.minQty` / `maxQty` in 1e-8 units.
    pub min_qty: u64,
    /// See `min_qty`.
    pub max_qty: u64,
    /// `NOTIONAL.minNotional` / `maxNotional` in 1e-8 units.
    pub min_notional: u64,
    /// See `min_notional`.
    pub max_notional: u64,
}

/// Quote assets recognised when splitting an unknown symbol into base and quote.
const QUOTES: [&str; 9] = [
    "FDUSD", "USDT", "USDC", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY",
];

fn units(raw: &str) -> u64 {
    // Only called with literals below; a typo is a programming error caught by the unit tests.
    decimal::parse_units(raw).expect("valid decimal literal")
}

impl SymbolSpec {
    /// Realistic settings for a known symbol (BTCUSDT, AAVEUSDT, STXUSDT, ARBUSDT), generic
    /// settings for any other.
    pub fn for_symbol(symbol: &str) -> Self {
        let symbol = symbol.to_ascii_uppercase();
        // (price, tick, step, rate, daily vol, median notional, first id, first agg id, minQty,
        //  maxQty, maxPrice). Ticks and steps as on Binance in 2025.
        let p = match symbol.as_str() {
            "BTCUSDT" => (
                107_400.0,
                "0.01",
                "0.00001",
                35.0,
                0.025,
                60.0,
                5_052_000_000u64,
                3_600_000_000u64,
                "0.00001",
                "9000",
                "1000000",
            ),
            "AAVEUSDT" => (
                285.0,
                "0.01",
                "0.001",
                3.0,
                0.05,
                150.0,
                258_000_000,
                180_000_000,
                "0.001",
                "90000",
                "100000",
            ),
            "STXUSDT" => (
                0.62,
                "0.0001",
                "0.1",
                2.0,
                0.06,
                80.0,
                131_000_000,
                92_000_000,
                "0.1",
                "9222449",
                "1000",
            ),
            "ARBUSDT" => (
                0.33,
                "0.0001",
                "0.1",
                4.0,
                0.06,
                80.0,
                265_000_000,
                170_000_000,
                "0.1",
                "9222449",
                "1000",
            ),
            _ => {
                let key = crate::rng::symbol_key(&symbol);
                (
                    1.0,
                    "0.0001",
                    "0.1",
                    1.0,
                    0.05,
                    50.0,
                    1_000_000 + key % 100_000_000,
                    500_000 + key % 50_000_000,
                    "0.1",
                    "9000000",
                    "1000",
                )
            }
        };
        let (base, quote) = split_symbol(&symbol);
        let tick = units(p.1);
        Self {
            base_asset: base,
            quote_asset: quote,
            tick_size: tick,
            step_size: units(p.2),
            initial_price: p.0,
            trades_per_sec: p.3,
            daily_volatility: p.4,
            median_notional: p.5,
            first_trade_id: p.6,
            first_agg_id: p.7,
            status: "TRADING".into(),
            min_price: tick,
            max_price: units(p.10),
            min_qty: units(p.8),
            max_qty: units(p.9),
            min_notional: units("5"),
            max_notional: units("9000000"),
            symbol,
        }
    }

    /// Check the spec; the error names the symbol and the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: String| ConfigError::Symbol {
            symbol: self.symbol.clone(),
            field: field.to_string(),
            why,
        };
        if !trade_proto::rules::is_symbol(&self.symbol) {
            return Err(bad(
                "symbol",
                format!(
                    "{:?} must match {}",
                    self.symbol,
                    trade_proto::rules::SYMBOL_PATTERN
                ),
            ));
        }
        if self.tick_size == 0 {
            return Err(bad("tick_size", "must be positive".into()));
        }
        if self.step_size == 0 {
            return Err(bad("step_size", "must be positive".into()));
        }
        if !(self.initial_price.is_finite()
            && self.initial_price * SCALE as f64 >= 10.0 * self.tick_size as f64)
        {
            return Err(bad(
                "initial_price",
                format!(
                    "{} must be at least 10 ticks of {}",
                    self.initial_price,
                    decimal::Units(self.tick_size.into())
                ),
            ));
        }
        if !(self.trades_per_sec.is_finite() && self.trades_per_sec >= 0.0) {
            return Err(bad(
                "trades_per_sec",
                format!("{} must be >= 0", self.trades_per_sec),
            ));
        }
        if !(self.daily_volatility.is_finite() && (0.0..1.0).contains(&self.daily_volatility)) {
            return Err(bad(
                "daily_volatility",
                format!("{} must be in [0, 1)", self.daily_volatility),
            ));
        }
        if !(self.median_notional.is_finite() && self.median_notional > 0.0) {
            return Err(bad(
                "median_notional",
                format!("{} must be > 0", self.median_notional),
            ));
        }
        if !SYMBOL_STATUSES.contains(&self.status.as_str()) {
            return Err(bad(
                "status",
                format!("{:?} is not one of {SYMBOL_STATUSES:?}", self.status),
            ));
        }
        Ok(())
    }
}

/// Split `BTCUSDT` into (`BTC`, `USDT`) using common quote assets; unknown: last 4 letters.
pub fn split_symbol(symbol: &str) -> (String, String) {
    for q in QUOTES {
        if let Some(base) = symbol.strip_suffix(q)
            && !base.is_empty()
        {
            return (base.to_string(), q.to_string());
        }
    }
    let cut = symbol.len().saturating_sub(4).max(1).min(symbol.len());
    (symbol[..cut].to_string(), symbol[cut..].to_string())
}

/// The whole simulator configuration. Construct with `SimConfig::default()` and change fields.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of the tape and of fault decisions: same seed, same trades.
    pub seed: u64,
    /// Symbols served, in order.
    pub symbols: Vec<SymbolSpec>,
    /// Multiplies every symbol's rate (load tests: e.g. 2000 for ~88,000 trades/s in total).
    pub rate_multiplier: f64,
    /// Tape time at start-up, in ms since the epoch; `None` = the wall clock.
    pub start_time_ms: Option<i64>,
    /// Tape clock speed: 1.0 = real time, 60.0 = one tape minute per second.
    pub clock_speed: f64,
    /// First trade time (ms); `None` = `history_days` before start, floored to the minute.
    pub genesis_ms: Option<i64>,
    /// Days of history before start when `genesis_ms` is `None`.
    pub history_days: u32,
    /// WebSocket server ping interval.
    pub ping_interval: Duration,
    /// Disconnect when a ping stays unanswered this long.
    pub pong_timeout: Duration,
    /// Connections are closed at this age.
    pub max_connection_age: Duration,
    /// Incoming messages (pings, pongs, control messages) per second per connection; the next one
    /// disconnects.
    pub max_incoming_per_sec: u32,
    /// Streams per connection.
    pub max_streams: usize,
    /// Connection attempts allowed per IP within `connection_attempt_window`.
    pub connection_attempts: u32,
    /// Window of `connection_attempts`.
    pub connection_attempt_window: Duration,
    /// REST request weight allowed per IP per `weight_window`.
    pub weight_limit: u32,
    /// Window of `weight_limit` (Binance: one minute).
    pub weight_window: Duration,
    /// Requests answered 429 within one window after which the IP is banned (418).
    pub ban_after_429s: u32,
    /// Length of a 418 ban.
    pub ban_duration: Duration,
    /// After a `serverShutdown` event, connections are closed after this delay.
    pub server_shutdown_grace: Duration,
    /// Granularity of live emission: trades due are flushed at least this often.
    pub pump_tick: Duration,
    /// Capacity (in batches) of the channel feeding connections; slower ones lag and miss data.
    pub broadcast_capacity: usize,
    /// Faults active from start-up.
    pub faults: FaultSettings,
    /// Multiplies every rate for tape time before start-up (the history REST and the trade
    /// archive serve). 1.0 = history as busy as live; tests loading weeks of archive use e.g.
    /// 0.01 so a BTCUSDT day is ~30,000 trades rather than ~3 million.
    pub history_rate_multiplier: f64,
    /// Bytes of built archive zips kept in memory (a client fetches a `.CHECKSUM` then its zip;
    /// both come from one build). 0 = no cache.
    pub archive_cache_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            symbols: ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]
                .iter()
                .map(|s| SymbolSpec::for_symbol(s))
                .collect(),
            rate_multiplier: 1.0,
            start_time_ms: None,
            clock_speed: 1.0,
            genesis_ms: None,
            history_days: 40,
            ping_interval: BINANCE_PING_INTERVAL,
            pong_timeout: BINANCE_PONG_TIMEOUT,
            max_connection_age: BINANCE_MAX_CONNECTION_AGE,
            max_incoming_per_sec: BINANCE_MAX_INCOMING_PER_SEC,
            max_streams: BINANCE_MAX_STREAMS,
            connection_attempts: BINANCE_CONNECTION_ATTEMPTS,
            connection_attempt_window: BINANCE_CONNECTION_ATTEMPT_WINDOW,
            weight_limit: BINANCE_WEIGHT_LIMIT,
            weight_window: Duration::from_secs(60),
            ban_after_429s: 10,
            ban_duration: BINANCE_BAN_DURATION,
            server_shutdown_grace: Duration::from_secs(30),
            pump_tick: Duration::from_millis(2),
            broadcast_capacity: 16_384,
            faults: FaultSettings::default(),
            history_rate_multiplier: 1.0,
            archive_cache_bytes: 256 << 20,
        }
    }
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A simulator-wide setting is invalid; fix the named setting.
    #[error("invalid setting {setting}: {why}")]
    Setting {
        /// The field or flag.
        setting: String,
        /// Why it is wrong.
        why: String,
    },
    /// A symbol's spec is invalid.
    #[error("invalid symbol {symbol} field {field}: {why}")]
    Symbol {
        /// The symbol.
        symbol: String,
        /// The field of [`SymbolSpec`].
        field: String,
        /// Why it is wrong.
        why: String,
    },
}

fn setting(setting: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Setting {
        setting: setting.to_string(),
        why: why.into(),
    }
}

impl SimConfig {
    /// Replace the symbol set with known or generic symbols at their default rates.
    pub fn with_symbols(mut self, symbols: &[&str]) -> Self {
        self.symbols = symbols.iter().map(|s| SymbolSpec::for_symbol(s)).collect();
        self
    }

    /// Apply `BTCUSDT=35,AAVEUSDT=3`: known symbols keep their other settings, unknown symbols
    /// are added with generic settings.
    pub fn apply_rates(&mut self, rates: &[(String, f64)]) {
        for (sym, rate) in rates {
            match self.symbols.iter_mut().find(|s| &s.symbol == sym) {
                Some(spec) => spec.trades_per_sec = *rate,
                None => {
                    let mut spec = SymbolSpec::for_symbol(sym);
                    spec.trades_per_sec = *rate;
                    self.symbols.push(spec);
                }
            }
        }
    }

    /// Check every setting; called by [`crate::Sim::start`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.symbols.is_empty() {
            return Err(setting("symbols", "at least one symbol is needed"));
        }
        for (i, s) in self.symbols.iter().enumerate() {
            s.validate()?;
            if self.symbols[..i].iter().any(|o| o.symbol == s.symbol) {
                return Err(setting("symbols", format!("{} is listed twice", s.symbol)));
            }
        }
        if !(self.rate_multiplier.is_finite() && self.rate_multiplier >= 0.0) {
            return Err(setting(
                "rate_multiplier",
                format!("{} must be >= 0", self.rate_multiplier),
            ));
        }
        if !(self.history_rate_multiplier.is_finite() && self.history_rate_multiplier >= 0.0) {
            return Err(setting(
                "history_rate_multiplier",
                format!("{} must be >= 0", self.history_rate_multiplier),
            ));
        }
        if !(self.clock_speed.is_finite() && self.clock_speed > 0.0) {
            return Err(setting(
                "clock_speed",
                format!("{} must be > 0", self.clock_speed),
            ));
        }
        for (name, d) in [
            ("ping_interval", self.ping_interval),
            ("pong_timeout", self.pong_timeout),
            ("max_connection_age", self.max_connection_age),
            ("connection_attempt_window", self.connection_attempt_window),
            ("weight_window", self.weight_window),
            ("pump_tick", self.pump_tick),
        ] {
            if d.is_zero() {
                return Err(setting(name, "must be longer than zero"));
            }
        }
        if self.max_incoming_per_sec == 0 {
            return Err(setting("max_incoming_per_sec", "must be at least 1"));
        }
        if self.max_streams == 0 {
            return Err(setting("max_streams", "must be at least 1"));
        }
        if self.broadcast_capacity == 0 {
            return Err(setting("broadcast_capacity", "must be at least 1"));
        }
        self.faults
            .validate()
            .map_err(|why| setting("faults", why))?;
        Ok(())
    }
}

/// Parse `BTCUSDT=35,AAVEUSDT=3` (symbols upper-cased and held to the contract's rule, rates
/// >= 0).
pub fn parse_rates(raw: &str) -> Result<Vec<(String, f64)>, ConfigError> {
    raw.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|part| {
            let (sym, rate) = part.split_once('=').ok_or_else(|| {
                setting(
                    "rates",
                    format!("{part:?} is not SYMBOL=TRADES_PER_SECOND (in {raw:?})"),
                )
            })?;
            let rate: f64 = rate.trim().parse().map_err(|_| {
                setting(
                    "rates",
                    format!("rate {rate:?} of {sym:?} is not a number (in {raw:?})"),
                )
            })?;
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(setting(
                    "rates",
                    format!("rate {rate} of {sym:?} must be >= 0"),
                ));
            }
            let symbol = trade_proto::rules::normalise_symbol(sym.trim()).ok_or_else(|| {
                setting(
                    "rates",
                    format!(
                        "{sym:?} is not a Binance symbol ({}) (in {raw:?})",
                        trade_proto::rules::SYMBOL_PATTERN
                    ),
                )
            })?;
            Ok((symbol, rate))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_realistic() {
        let c = SimConfig::default();
        c.validate().unwrap();
        let btc = &c.symbols[0];
        assert_eq!(btc.symbol, "BTCUSDT");
        assert_eq!(btc.tick_size, 1_000_000);
        assert_eq!(btc.step_size, 1_000);
        assert_eq!(
            (btc.base_asset.as_str(), btc.quote_asset.as_str()),
            ("BTC", "USDT")
        );
        let stx = &c.symbols[2];
        assert_eq!(stx.tick_size, 10_000);
        assert_eq!(stx.step_size, 10_000_000);
    }

    #[test]
    fn parses_rates() {
        let r = parse_rates("BTCUSDT=35, dogeusdt=2.5").unwrap();
        assert_eq!(r, vec![("BTCUSDT".into(), 35.0), ("DOGEUSDT".into(), 2.5)]);
        let err = parse_rates("BTC/USDT=1").unwrap_err().to_string();
        assert!(err.contains("\"BTC/USDT\""), "{err}");
        let err = parse_rates("BTCUSDT").unwrap_err().to_string();
        assert!(err.contains("\"BTCUSDT\""), "{err}");
        let err = parse_rates("BTCUSDT=fast").unwrap_err().to_string();
        assert!(err.contains("\"fast\""), "{err}");
    }

    #[test]
    fn apply_rates_adds_unknown_symbols() {
        let mut c = SimConfig::default();
        c.apply_rates(&[("BTCUSDT".into(), 100.0), ("DOGEUSDT".into(), 2.0)]);
        assert_eq!(c.symbols[0].trades_per_sec, 100.0);
        let doge = c.symbols.last().unwrap();
        assert_eq!(doge.symbol, "DOGEUSDT");
        assert_eq!(doge.base_asset, "DOGE");
        c.validate().unwrap();
    }

    #[test]
    fn validation_names_the_setting() {
        let mut c = SimConfig {
            clock_speed: 0.0,
            ..SimConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("clock_speed")
        );
        c.clock_speed = 1.0;
        c.symbols[1].status = "OPEN".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("AAVEUSDT") && e.contains("status") && e.contains("OPEN"),
            "{e}"
        );
        c.symbols[1].status = "HALT".into();
        c.symbols.push(SymbolSpec::for_symbol("BTCUSDT"));
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
    }
}
