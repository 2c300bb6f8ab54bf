//! Binance's payloads exactly as they travel, as serde types: websocket events and REST rows.
//!
//! This module owns the *shapes*; it does no validation beyond what serde does and reads no
//! clock. The hot websocket path does not go through these types (see [`crate::parse`], a
//! hand-rolled scanner measured faster); they document the frames, serve the REST client, and are
//! the reference the scanner is tested against.
//!
//! Every struct ignores unknown fields (Binance adds fields without notice) and every field
//! Binance has dropped over the years is optional (`b`/`a` in trade events, `MIN_NOTIONAL` next
//! to `NOTIONAL`). Decimal values stay strings: no binary floating point touches a price.
//!
//! Source of every shape: Binance spot API docs (`web-socket-streams.md`, `rest-api.md`,
//! `filters.md`), summarised in `docs/binance.md`, and the public captures listed in
//! `binance/tests/fixtures/SOURCES.md`.

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Websocket
// ---------------------------------------------------------------------------------------------

/// A trade event, `<symbol>@trade`:
/// `{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000",
/// "q":"0.00024000","T":1751132780368,"m":true,"M":true}`.
///
/// Times are milliseconds, or microseconds when the connection asked for
/// `timeUnit=MICROSECOND`; the type does not know which.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TradeEvent<'a> {
    /// Event type, always `"trade"`.
    #[serde(rename = "e", borrow)]
    pub event_type: &'a str,
    /// Event time (`E`).
    #[serde(rename = "E")]
    pub event_time: i64,
    /// Symbol, upper case (`s`).
    #[serde(rename = "s", borrow)]
    pub symbol: &'a str,
    /// Trade id (`t`), consecutive per symbol.
    #[serde(rename = "t")]
    pub trade_id: i64,
    /// Price as a decimal string (`p`).
    #[serde(rename = "p", borrow)]
    pub price: &'a str,
    /// Quantity as a decimal string (`q`).
    #[serde(rename = "q", borrow)]
    pub quantity: &'a str,
    /// Trade time (`T`).
    #[serde(rename = "T")]
    pub trade_time: i64,
    /// Buyer is the market maker (`m`).
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
    /// Buyer order id (`b`): only in frames before 2024-06-18.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub buyer_order_id: Option<i64>,
    /// Seller order id (`a`): only in frames before 2024-06-18.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub seller_order_id: Option<i64>,
}

/// The wrapping of every event on a combined stream (`/stream?streams=...`):
/// `{"stream":"btcusdt@trade","data":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Combined<T> {
    /// Stream name, lower case, e.g. `btcusdt@trade` or `!serverShutdown`.
    pub stream: String,
    /// The event, exactly as it would arrive on a raw stream.
    pub data: T,
}

/// The `serverShutdown` event (2026): `{"e":"serverShutdown","E":1770123456789}`; on a combined
/// connection it arrives under stream `!serverShutdown`. The client should reconnect at once,
/// before the old socket closes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ServerShutdownEvent {
    /// Event type, always `"serverShutdown"`.
    #[serde(rename = "e")]
    pub event_type: String,
    /// Event time (`E`), in the connection's time unit.
    #[serde(rename = "E")]
    pub event_time: i64,
}

/// A request on the websocket: `{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`.
    pub method: String,
    /// Stream names, or `["combined", true]` for the property methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    /// Echoed in the reply.
    pub id: u64,
}

/// The answer to a control request: `{"result":null,"id":1}` (or the list for
/// `LIST_SUBSCRIPTIONS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    /// `null` for SUBSCRIBE/UNSUBSCRIBE/SET_PROPERTY, a list or a value otherwise.
    #[serde(default)]
    pub result: serde_json::Value,
    /// The request id.
    pub id: Option<u64>,
}

/// A rejected control request: `{"code":2,"msg":"Invalid request: ..."}` (code 3: invalid JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    /// Binance's websocket error code (0 unknown property, 1 invalid value type, 2 invalid
    /// request, 3 invalid JSON).
    pub code: i64,
    /// Human-readable reason.
    pub msg: String,
    /// The request id, when Binance could read it.
    #[serde(default)]
    pub id: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

/// One row of `GET /api/v3/historicalTrades` or `GET /api/v3/trades`:
/// `{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
/// "time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestTrade {
    /// Trade id; the same id space as the stream's `t`.
    pub id: i64,
    /// Price, decimal string.
    pub price: String,
    /// Quantity, decimal string.
    pub qty: String,
    /// Price × quantity, decimal string.
    #[serde(default)]
    pub quote_qty: String,
    /// Trade time (ms, or µs with `X-MBX-TIME-UNIT: MICROSECOND`).
    pub time: i64,
    /// Buyer is the market maker.
    pub is_buyer_maker: bool,
    /// Legacy flag, always true on spot.
    #[serde(default)]
    pub is_best_match: bool,
}

/// One row of `GET /api/v3/aggTrades`: trades of one taker order at one price, compressed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AggTrade {
    /// Aggregate trade id.
    #[serde(rename = "a")]
    pub agg_id: i64,
    /// Price, decimal string.
    #[serde(rename = "p")]
    pub price: String,
    /// Quantity, decimal string.
    #[serde(rename = "q")]
    pub qty: String,
    /// First trade id of the aggregate (the `id` space of trades and the stream's `t`).
    #[serde(rename = "f")]
    pub first_trade_id: i64,
    /// Last trade id of the aggregate.
    #[serde(rename = "l")]
    pub last_trade_id: i64,
    /// Time (ms, or µs with `X-MBX-TIME-UNIT: MICROSECOND`).
    #[serde(rename = "T")]
    pub time: i64,
    /// Buyer is the market maker.
    #[serde(rename = "m")]
    pub is_buyer_maker: bool,
    /// Legacy flag, always true on spot.
    #[serde(rename = "M", default)]
    pub is_best_match: bool,
}

/// One row of `GET /api/v3/klines`: a 12-element array
/// `[openTime, "open", "high", "low", "close", "volume", closeTime, "quoteVolume", trades,
/// "takerBuyBase", "takerBuyQuote", "0"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "KlineRow")]
pub struct Kline {
    /// Open time of the interval (ms).
    pub open_time: i64,
    /// Open price.
    pub open: String,
    /// High price.
    pub high: String,
    /// Low price.
    pub low: String,
    /// Close price.
    pub close: String,
    /// Base asset volume.
    pub volume: String,
    /// Close time of the interval (ms, inclusive: `open_time + interval - 1`).
    pub close_time: i64,
    /// Quote asset volume.
    pub quote_volume: String,
    /// Number of trades.
    pub trade_count: i64,
    /// Taker buy base asset volume.
    pub taker_buy_base_volume: String,
    /// Taker buy quote asset volume.
    pub taker_buy_quote_volume: String,
}

/// The positional form of [`Kline`]; exactly 12 elements or serde fails with the length.
#[derive(Deserialize)]
struct KlineRow(
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    String,
    String,
    serde::de::IgnoredAny,
);

impl From<KlineRow> for Kline {
    fn from(r: KlineRow) -> Self {
        Kline {
            open_time: r.0,
            open: r.1,
            high: r.2,
            low: r.3,
            close: r.4,
            volume: r.5,
            close_time: r.6,
            quote_volume: r.7,
            trade_count: r.8,
            taker_buy_base_volume: r.9,
            taker_buy_quote_volume: r.10,
        }
    }
}

impl Serialize for Kline {
    /// Serialises back to Binance's 12-element array (for simulators and fixtures).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(12)?;
        t.serialize_element(&self.open_time)?;
        t.serialize_element(&self.open)?;
        t.serialize_element(&self.high)?;
        t.serialize_element(&self.low)?;
        t.serialize_element(&self.close)?;
        t.serialize_element(&self.volume)?;
        t.serialize_element(&self.close_time)?;
        t.serialize_element(&self.quote_volume)?;
        t.serialize_element(&self.trade_count)?;
        t.serialize_element(&self.taker_buy_base_volume)?;
        t.serialize_element(&self.taker_buy_quote_volume)?;
        t.serialize_element("0")?;
        t.end()
    }
}

/// `GET /api/v3/exchangeInfo`: only the parts the pipeline uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    /// Always `"UTC"`.
    #[serde(default)]
    pub timezone: String,
    /// Server time (ms).
    #[serde(default)]
    pub server_time: i64,
    /// The limits the server enforces, e.g. `REQUEST_WEIGHT` 6000 per 1 MINUTE.
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// One entry per requested symbol.
    pub symbols: Vec<SymbolInfo>,
}

/// One entry of `exchangeInfo.rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// `REQUEST_WEIGHT`, `ORDERS` or `RAW_REQUESTS`.
    pub rate_limit_type: String,
    /// `SECOND`, `MINUTE` or `DAY`.
    pub interval: String,
    /// Number of intervals in the window.
    pub interval_num: u32,
    /// The limit in that window.
    pub limit: u32,
}

/// One symbol of `exchangeInfo`: the slowly-changing dimension.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", try_from = "SymbolInfoRaw")]
pub struct SymbolInfo {
    /// Symbol, upper case.
    pub symbol: String,
    /// `TRADING`, `END_OF_DAY`, `HALT`, `BREAK` or `CANCEL_ONLY`.
    pub status: String,
    /// Base asset, e.g. `BTC`.
    pub base_asset: String,
    /// Decimal places of the base asset.
    pub base_asset_precision: u32,
    /// Quote asset, e.g. `USDT`.
    pub quote_asset: String,
    /// Decimal places of the quote asset (`quoteAssetPrecision`, or the legacy `quotePrecision`
    /// when only that one is present).
    pub quote_asset_precision: u32,
    /// Order types, e.g. `["LIMIT","MARKET"]`.
    #[serde(default)]
    pub order_types: Vec<String>,
    /// Permission sets, e.g. `[["SPOT","MARGIN"]]`; `permissions` is now always empty.
    #[serde(default)]
    pub permission_sets: Vec<Vec<String>>,
    /// The symbol's filters; unknown filter types are kept as [`SymbolFilter::Other`].
    #[serde(default)]
    pub filters: Vec<SymbolFilter>,
}

/// [`SymbolInfo`] as sent: today's payloads carry both `quotePrecision` and
/// `quoteAssetPrecision`, older ones only the first.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SymbolInfoRaw {
    symbol: String,
    status: String,
    base_asset: String,
    base_asset_precision: u32,
    quote_asset: String,
    #[serde(default)]
    quote_asset_precision: Option<u32>,
    #[serde(default)]
    quote_precision: Option<u32>,
    #[serde(default)]
    order_types: Vec<String>,
    #[serde(default)]
    permission_sets: Vec<Vec<String>>,
    #[serde(default)]
    filters: Vec<SymbolFilter>,
}

impl TryFrom<SymbolInfoRaw> for SymbolInfo {
    type Error = String;

    fn try_from(r: SymbolInfoRaw) -> Result<Self, String> {
        let quote_asset_precision = r.quote_asset_precision.or(r.quote_precision).ok_or_else(
            || {
                format!(
                    "symbol {}: missing field `quoteAssetPrecision` (and legacy `quotePrecision`)",
                    r.symbol
                )
            },
        )?;
        Ok(SymbolInfo {
            symbol: r.symbol,
            status: r.status,
            base_asset: r.base_asset,
            base_asset_precision: r.base_asset_precision,
            quote_asset: r.quote_asset,
            quote_asset_precision,
            order_types: r.order_types,
            permission_sets: r.permission_sets,
            filters: r.filters,
        })
    }
}

impl SymbolInfo {
    /// The `PRICE_FILTER`, if present.
    pub fn price_filter(&self) -> Option<&PriceFilter> {
        self.filters.iter().find_map(|f| match f {
            SymbolFilter::PriceFilter(p) => Some(p),
            _ => None,
        })
    }

    /// The `LOT_SIZE` filter, if present.
    pub fn lot_size(&self) -> Option<&LotSize> {
        self.filters.iter().find_map(|f| match f {
            SymbolFilter::LotSize(l) => Some(l),
            _ => None,
        })
    }

    /// The notional bounds: `NOTIONAL` when present, else the legacy `MIN_NOTIONAL` (which has
    /// no maximum).
    pub fn notional(&self) -> Option<Notional> {
        let modern = self.filters.iter().find_map(|f| match f {
            SymbolFilter::Notional(n) => Some(n.clone()),
            _ => None,
        });
        modern.or_else(|| {
            self.filters.iter().find_map(|f| match f {
                SymbolFilter::MinNotional(m) => Some(Notional {
                    min_notional: m.min_notional.clone(),
                    max_notional: None,
                }),
                _ => None,
            })
        })
    }
}

/// A symbol filter, tagged by `filterType`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "filterType")]
pub enum SymbolFilter {
    /// `PRICE_FILTER`.
    #[serde(rename = "PRICE_FILTER")]
    PriceFilter(PriceFilter),
    /// `LOT_SIZE`.
    #[serde(rename = "LOT_SIZE")]
    LotSize(LotSize),
    /// `NOTIONAL` (since 2023).
    #[serde(rename = "NOTIONAL")]
    Notional(Notional),
    /// `MIN_NOTIONAL` (legacy).
    #[serde(rename = "MIN_NOTIONAL")]
    MinNotional(MinNotional),
    /// Any other filter (`ICEBERG_PARTS`, `MARKET_LOT_SIZE`, `PERCENT_PRICE_BY_SIDE`, ...).
    #[serde(other)]
    Other,
}

/// `PRICE_FILTER` bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceFilter {
    /// Minimum price.
    pub min_price: String,
    /// Maximum price.
    pub max_price: String,
    /// Price increment.
    pub tick_size: String,
}

/// `LOT_SIZE` bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotSize {
    /// Minimum quantity.
    pub min_qty: String,
    /// Maximum quantity.
    pub max_qty: String,
    /// Quantity increment.
    pub step_size: String,
}

/// `NOTIONAL` bounds (price × quantity).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notional {
    /// Minimum notional.
    pub min_notional: String,
    /// Maximum notional; absent in legacy `MIN_NOTIONAL`.
    #[serde(default)]
    pub max_notional: Option<String>,
}

/// Legacy `MIN_NOTIONAL`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MinNotional {
    /// Minimum notional.
    pub min_notional: String,
}

/// One entry of `GET /api/v3/ticker/24hr` (the parts used to check trade-id continuity:
/// `lastId - firstId + 1 == count`; `firstId`/`lastId` are -1 when there were no trades).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticker24hr {
    /// Symbol.
    pub symbol: String,
    /// Start of the rolling window (ms).
    #[serde(default)]
    pub open_time: i64,
    /// End of the rolling window (ms).
    #[serde(default)]
    pub close_time: i64,
    /// First trade id in the window.
    pub first_id: i64,
    /// Last trade id in the window.
    pub last_id: i64,
    /// Number of trades in the window.
    pub count: i64,
    /// Base volume, decimal string.
    #[serde(default)]
    pub volume: String,
}

/// A REST error body: `{"code":-1121,"msg":"Invalid symbol."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiError {
    /// Binance error code (negative for REST, e.g. -1003 too much weight, -1121 invalid
    /// symbol; 0 in the 451 restricted-location body).
    pub code: i64,
    /// Human-readable reason.
    pub msg: String,
}
