//! The trade tape: a pure, deterministic function of (seed, symbol, time).
//!
//! Nothing here reads a clock or a socket. Every trade of every symbol, from genesis to any point
//! in the future, is defined by the seed and the [`SymbolSpec`]; the live streams, the REST
//! history and the ground truth all read the same tape, so they always agree.
//!
//! # How it is built (three levels, so any range is cheap to materialise)
//! 1. **Minute** (key: seed, symbol, unix minute): a burst multiplier, the number of aggregate
//!    trades (taker orders) and of extra fills, and one step of a mean-reverting random walk of the
//!    log price. Cumulative counts and the walk are checkpointed per minute from genesis
//!    (`Checkpoint`), so trade id = `first_trade_id` + trades before it, in O(log n).
//! 2. **Skeleton** (per minute): the minute's counts split over its 60 seconds (with short
//!    intra-minute spikes) and a Brownian bridge of the price through the second boundaries.
//! 3. **Second**: times (µs), prices (bid/ask bounce around the bridged mid, on the tick grid),
//!    sizes (log-normal, on the step grid), sides, and the grouping of fills into aggregate trades.
//!
//! Aggregates of whole minutes are cached (`minute_agg`), so a month of 1-minute klines is summed
//! from cached rows after the first pass.
//!
//! The file is longer than the sim's other modules (~800 lines with its tests) on purpose: the
//! three levels share one set of draws and caches, and splitting them would spread one
//! determinism contract (same seed, same trades) over several files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::SymbolSpec;
use crate::decimal::SCALE;
use crate::kline::Agg;
use crate::rng::{KeyedRng, Stream, multinomial, symbol_key};
// The trade type lives in its own leaf module so `kline` can aggregate trades without depending
// on the tape (which itself uses `kline::Agg`).
pub use crate::trade::Trade;

/// Microseconds per second.
pub const SEC_US: i64 = 1_000_000;
/// Microseconds per minute.
pub const MIN_US: i64 = 60 * SEC_US;

/// Share of trades that start a new aggregate trade (the rest are extra fills of the same taker
/// order at the same price and time). 0.7 gives ~1.4 fills per aggregate trade.
const AGG_SHARE: f64 = 0.7;
/// Probability that a minute is a burst minute (rates multiplied by 3 to 12).
const P_BURST: f64 = 0.03;
/// Burst multipliers are uniform in `[BURST_MIN, BURST_MIN + BURST_SPAN)`.
const BURST_MIN: f64 = 3.0;
/// See [`BURST_MIN`].
const BURST_SPAN: f64 = 9.0;
/// Probability that a minute contains a spike: a run of 1-5 seconds with 12x the intensity.
const P_SPIKE: f64 = 0.2;
/// Relative intensity of spike seconds.
const SPIKE_WEIGHT: f64 = 12.0;
/// The log price reverts to its start with this time constant (minutes): about two weeks.
const REVERSION_MINUTES: f64 = 14.0 * 1440.0;
/// Spread of the log-normal trade size (sigma of ln size).
const QTY_SIGMA: f64 = 1.2;
/// Entries of the size quantile table (indexed by 10 random bits).
const QTY_TABLE: usize = 1024;
/// Skeletons kept in memory per symbol before the cache is cleared.
const SKELETON_CACHE: usize = 4096;

/// State at the start of a minute.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    cum_trades: u64,
    cum_aggs: u64,
    /// Log price.
    x: f64,
}

/// The per-minute draw.
#[derive(Debug, Clone, Copy)]
struct MinuteDraw {
    mult: f64,
    n_aggs: u64,
    n_extra: u64,
    z: f64,
}

/// A minute split into seconds.
#[derive(Debug)]
struct Skeleton {
    /// Aggregate trades per second.
    sec_aggs: [u64; 60],
    /// Trade id of the first trade of each second; `[60]` is the first id of the next minute.
    sec_first_id: [u64; 61],
    /// Agg id of the first aggregate trade of each second; `[60]` is the next minute's.
    sec_first_agg: [u64; 61],
    /// Mid price at each second boundary.
    anchors: [f64; 61],
    /// Price volatility within one second (fraction of price).
    sigma_sec: f64,
}

/// One symbol's tape parameters and caches.
#[derive(Debug)]
pub struct SymbolTape {
    /// The spec this tape was built from.
    pub spec: SymbolSpec,
    key: u64,
    /// Effective trades per second (spec rate x multiplier).
    rate: f64,
    x0: f64,
    sigma_min: f64,
    qty_table: Vec<u64>,
    checkpoints: RwLock<Vec<Checkpoint>>,
    skeletons: Mutex<HashMap<i64, Arc<Skeleton>>>,
    minute_aggs: RwLock<HashMap<i64, Agg>>,
}

/// The tapes of all symbols.
#[derive(Debug)]
pub struct Tape {
    seed: u64,
    genesis_minute: i64,
    symbols: Vec<SymbolTape>,
    /// Rates of minutes before `history_until_minute` are multiplied by this (1.0 = as live), so
    /// weeks of history (the trade archive) stay small while the live tape keeps its rate.
    history_multiplier: f64,
    /// See `history_multiplier`; `i64::MIN` = no history scaling.
    history_until_minute: i64,
}

impl Tape {
    /// Build the tape. `genesis_ms` is floored to the minute.
    pub fn new(seed: u64, specs: &[SymbolSpec], rate_multiplier: f64, genesis_ms: i64) -> Self {
        let genesis_minute = genesis_ms.div_euclid(60_000);
        let symbols = specs
            .iter()
            .map(|spec| {
                let key = symbol_key(&spec.symbol);
                let x0 = spec.initial_price.ln();
                SymbolTape {
                    key,
                    rate: spec.trades_per_sec * rate_multiplier,
                    x0,
                    sigma_min: spec.daily_volatility / 1440f64.sqrt(),
                    qty_table: qty_table(seed, key, spec),
                    checkpoints: RwLock::new(vec![Checkpoint {
                        cum_trades: 0,
                        cum_aggs: 0,
                        x: x0,
                    }]),
                    skeletons: Mutex::new(HashMap::new()),
                    minute_aggs: RwLock::new(HashMap::new()),
                    spec: spec.clone(),
                }
            })
            .collect();
        Self {
            seed,
            genesis_minute,
            symbols,
            history_multiplier: 1.0,
            history_until_minute: i64::MIN,
        }
    }

    /// Multiply every rate by `multiplier` for the minutes before the one holding `until_ms`
    /// (floored to the minute). Call before the tape is read: ids are cumulative from genesis.
    pub fn with_history_rate(mut self, multiplier: f64, until_ms: i64) -> Self {
        self.history_multiplier = multiplier;
        self.history_until_minute = until_ms.div_euclid(60_000);
        self
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// `true` when there are no symbols.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The symbol tapes, in configuration order.
    pub fn symbols(&self) -> &[SymbolTape] {
        &self.symbols
    }

    /// Index of a symbol by name.
    pub fn index_of(&self, symbol: &str) -> Option<usize> {
        self.symbols.iter().position(|s| s.spec.symbol == symbol)
    }

    /// Time of genesis in µs: no trade is earlier.
    pub fn genesis_us(&self) -> i64 {
        self.genesis_minute * MIN_US
    }

    fn minute_draw(&self, s: &SymbolTape, minute: i64) -> MinuteDraw {
        let mut rng = KeyedRng::new(self.seed, s.key, Stream::Minute, minute);
        let normal_mult = (1.0 - P_BURST * (BURST_MIN + BURST_SPAN / 2.0)) / (1.0 - P_BURST);
        let mult = if rng.chance(P_BURST) {
            BURST_MIN + BURST_SPAN * rng.uniform()
        } else {
            normal_mult
        };
        let rate = if minute < self.history_until_minute {
            s.rate * self.history_multiplier
        } else {
            s.rate
        };
        let lambda = rate * 60.0 * mult;
        let n_aggs = rng.poisson(lambda * AGG_SHARE);
        let n_extra = rng.poisson(lambda * (1.0 - AGG_SHARE));
        let n_extra = if n_aggs == 0 { 0 } else { n_extra };
        let z = rng.normal();
        MinuteDraw {
            mult,
            n_aggs,
            n_extra,
            z,
        }
    }

    /// Checkpoints `k` and `k + 1` (minute `genesis + k`), extending the checkpoint list.
    fn checkpoints(&self, sym: usize, k: usize) -> (Checkpoint, Checkpoint) {
        let s = &self.symbols[sym];
        {
            let cps = s.checkpoints.read().unwrap_or_else(|e| e.into_inner());
            if cps.len() > k + 1 {
                return (cps[k], cps[k + 1]);
            }
        }
        let mut cps = s.checkpoints.write().unwrap_or_else(|e| e.into_inner());
        while cps.len() <= k + 1 {
            let i = cps.len() - 1;
            let cp = cps[i];
            let d = self.minute_draw(s, self.genesis_minute + i as i64);
            let x = cp.x + (s.x0 - cp.x) / REVERSION_MINUTES + s.sigma_min * d.mult.sqrt() * d.z;
            cps.push(Checkpoint {
                cum_trades: cp.cum_trades + d.n_aggs + d.n_extra,
                cum_aggs: cp.cum_aggs + d.n_aggs,
                x,
            });
        }
        (cps[k], cps[k + 1])
    }

    fn minute_index(&self, minute: i64) -> Option<usize> {
        (minute >= self.genesis_minute).then(|| (minute - self.genesis_minute) as usize)
    }

    fn skeleton(&self, sym: usize, minute: i64) -> Option<Arc<Skeleton>> {
        let k = self.minute_index(minute)?;
        let s = &self.symbols[sym];
        if let Some(sk) = s
            .skeletons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&minute)
        {
            return Some(sk.clone());
        }
        let (cp, next) = self.checkpoints(sym, k);
        let d = self.minute_draw(s, minute);
        let mut rng = KeyedRng::new(self.seed, s.key, Stream::Skeleton, minute);
        let mut weights = [1.0f64; 60];
        if rng.chance(P_SPIKE) {
            let start = rng.below(60) as usize;
            let len = 1 + rng.below(5) as usize;
            for w in weights.iter_mut().skip(start).take(len) {
                *w = SPIKE_WEIGHT;
            }
        }
        let mut sec_aggs = [0u64; 60];
        multinomial(&mut rng, d.n_aggs, &weights, &mut sec_aggs);
        let mut extra_weights = weights;
        for (w, n) in extra_weights.iter_mut().zip(sec_aggs.iter()) {
            if *n == 0 {
                *w = 0.0;
            }
        }
        let mut sec_extra = [0u64; 60];
        if d.n_extra > 0 {
            // The last second with aggregate trades takes the remainder (never an empty second).
            let last = sec_aggs.iter().rposition(|n| *n > 0).unwrap_or(59);
            multinomial(
                &mut rng,
                d.n_extra,
                &extra_weights[..=last],
                &mut sec_extra[..=last],
            );
        }
        let mut sec_first_id = [0u64; 61];
        let mut sec_first_agg = [0u64; 61];
        sec_first_id[0] = s.spec.first_trade_id + cp.cum_trades;
        sec_first_agg[0] = s.spec.first_agg_id + cp.cum_aggs;
        for j in 0..60 {
            sec_first_id[j + 1] = sec_first_id[j] + sec_aggs[j] + sec_extra[j];
            sec_first_agg[j + 1] = sec_first_agg[j] + sec_aggs[j];
        }
        // Brownian bridge of the log price from cp.x to next.x through the 59 inner boundaries.
        let sigma_sec = s.sigma_min * d.mult.sqrt() / 60f64.sqrt();
        let mut w = [0f64; 61];
        for j in 1..=60 {
            w[j] = w[j - 1] + sigma_sec * rng.normal_fast();
        }
        let mut anchors = [0f64; 61];
        for (j, a) in anchors.iter_mut().enumerate() {
            let f = j as f64 / 60.0;
            *a = (cp.x + (next.x - cp.x) * f + w[j] - f * w[60]).exp();
        }
        let sk = Arc::new(Skeleton {
            sec_aggs,
            sec_first_id,
            sec_first_agg,
            anchors,
            sigma_sec,
        });
        let mut cache = s.skeletons.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= SKELETON_CACHE {
            cache.clear();
        }
        cache.insert(minute, sk.clone());
        Some(sk)
    }

    /// All trades of one second (`unix_sec`), in id order. Empty before genesis.
    pub fn second(&self, sym: usize, unix_sec: i64) -> Vec<Trade> {
        let mut out = Vec::new();
        self.second_into(sym, unix_sec, &mut out);
        out
    }

    /// Append the trades of one second to `out`.
    pub fn second_into(&self, sym: usize, unix_sec: i64, out: &mut Vec<Trade>) {
        let minute = unix_sec.div_euclid(60);
        let Some(sk) = self.skeleton(sym, minute) else {
            return;
        };
        let j = (unix_sec - minute * 60) as usize;
        self.materialise_second(sym, unix_sec, &sk, j, out);
    }

    fn materialise_second(
        &self,
        sym: usize,
        unix_sec: i64,
        sk: &Skeleton,
        j: usize,
        out: &mut Vec<Trade>,
    ) {
        let s = &self.symbols[sym];
        let na = sk.sec_aggs[j] as usize;
        if na == 0 {
            return;
        }
        let n_trades = (sk.sec_first_id[j + 1] - sk.sec_first_id[j]) as usize;
        let ne = n_trades - na;
        let mut rng = KeyedRng::new(self.seed, s.key, Stream::Second, unix_sec);
        let mut offsets: Vec<u32> = (0..na).map(|_| rng.below(SEC_US as u64) as u32).collect();
        offsets.sort_unstable();
        let mut fills = vec![1u32; na];
        for _ in 0..ne {
            fills[rng.below(na as u64) as usize] += 1;
        }
        // Micro random walk across the aggregate trades, bridged to end at zero.
        let p0 = sk.anchors[j];
        let p1 = sk.anchors[j + 1];
        let step_sd = p0 * sk.sigma_sec / (na as f64).sqrt();
        let mut walk = Vec::with_capacity(na);
        let mut acc = 0.0;
        for _ in 0..na {
            acc += step_sd * rng.normal_fast();
            walk.push(acc);
        }
        let tick = s.spec.tick_size;
        let tick_f = tick as f64 / SCALE as f64;
        let step = s.spec.step_size;
        let base_time = unix_sec * SEC_US;
        let mut id = sk.sec_first_id[j];
        out.reserve(n_trades);
        for (i, agg_id) in (0..na).zip(sk.sec_first_agg[j]..) {
            let f = f64::from(offsets[i]) / SEC_US as f64;
            let g = (i + 1) as f64 / na as f64;
            let mid = p0 + (p1 - p0) * f + walk[i] - g * acc;
            let bid_ticks = ((mid / tick_f).floor() as u64).max(1);
            let is_buyer_maker = rng.next_u64() & 1 == 1;
            // A taker sell hits the bid; a taker buy lifts the ask one tick above.
            let price = if is_buyer_maker {
                bid_ticks * tick
            } else {
                (bid_ticks + 1) * tick
            };
            let time_us = base_time + i64::from(offsets[i]);
            for _ in 0..fills[i] {
                let qty = s.qty_table[(rng.next_u64() >> 54) as usize] * step;
                out.push(Trade {
                    id,
                    agg_id,
                    price,
                    qty,
                    time_us,
                    is_buyer_maker,
                });
                id += 1;
            }
        }
    }

    /// All trades of one minute (`unix_minute`).
    pub fn minute_trades(&self, sym: usize, unix_minute: i64) -> Vec<Trade> {
        let Some(sk) = self.skeleton(sym, unix_minute) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity((sk.sec_first_id[60] - sk.sec_first_id[0]) as usize);
        for j in 0..60 {
            self.materialise_second(sym, unix_minute * 60 + j as i64, &sk, j, &mut out);
        }
        out
    }

    /// Aggregate of a whole minute (cached; the tape of a minute never changes).
    pub fn minute_agg(&self, sym: usize, unix_minute: i64) -> Agg {
        let s = &self.symbols[sym];
        if let Some(a) = s
            .minute_aggs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&unix_minute)
        {
            return *a;
        }
        let a = Agg::of(&self.minute_trades(sym, unix_minute));
        s.minute_aggs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(unix_minute, a);
        a
    }

    /// Number of trades strictly before `t_us` (since genesis).
    pub fn count_before(&self, sym: usize, t_us: i64) -> u64 {
        self.id_before(sym, t_us) - self.symbols[sym].spec.first_trade_id
    }

    /// Id of the first trade at or after `t_us` (`first_trade_id` at or before genesis).
    pub fn id_before(&self, sym: usize, t_us: i64) -> u64 {
        let s = &self.symbols[sym];
        if t_us <= self.genesis_us() {
            return s.spec.first_trade_id;
        }
        let sec = t_us.div_euclid(SEC_US);
        let minute = sec.div_euclid(60);
        let Some(sk) = self.skeleton(sym, minute) else {
            return s.spec.first_trade_id;
        };
        let j = (sec - minute * 60) as usize;
        let first = sk.sec_first_id[j];
        if t_us == sec * SEC_US || sk.sec_aggs[j] == 0 {
            return first;
        }
        let mut buf = Vec::new();
        self.materialise_second(sym, sec, &sk, j, &mut buf);
        first + buf.iter().take_while(|t| t.time_us < t_us).count() as u64
    }

    /// Id of the first aggregate trade at or after `t_us`.
    pub fn agg_id_before(&self, sym: usize, t_us: i64) -> u64 {
        let s = &self.symbols[sym];
        if t_us <= self.genesis_us() {
            return s.spec.first_agg_id;
        }
        let sec = t_us.div_euclid(SEC_US);
        let minute = sec.div_euclid(60);
        let Some(sk) = self.skeleton(sym, minute) else {
            return s.spec.first_agg_id;
        };
        let j = (sec - minute * 60) as usize;
        let first = sk.sec_first_agg[j];
        if t_us == sec * SEC_US || sk.sec_aggs[j] == 0 {
            return first;
        }
        let mut buf = Vec::new();
        self.materialise_second(sym, sec, &sk, j, &mut buf);
        match buf.iter().find(|t| t.time_us >= t_us) {
            Some(t) => t.agg_id,
            None => sk.sec_first_agg[j + 1],
        }
    }

    /// The minute (unix) holding the trade with index `n` since genesis (or agg index when
    /// `aggs`). The checkpoints must already reach that far (they do for any id at or before a
    /// time passed to [`Tape::id_before`]).
    fn minute_of(&self, sym: usize, n: u64, aggs: bool) -> Option<i64> {
        let cps = self.symbols[sym]
            .checkpoints
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let key = |c: &Checkpoint| if aggs { c.cum_aggs } else { c.cum_trades };
        // Largest k with key(cps[k]) <= n, among minutes whose end checkpoint exists.
        let usable = cps.len().checked_sub(1)?;
        if usable == 0 || key(&cps[usable]) <= n {
            return None;
        }
        let k = cps[..usable].partition_point(|c| key(c) <= n) - 1;
        Some(self.genesis_minute + k as i64)
    }

    /// Up to `limit` consecutive trades starting at `from_id`, stopping at `last_id` (inclusive).
    pub fn trades_from_id(
        &self,
        sym: usize,
        from_id: u64,
        last_id: u64,
        limit: usize,
    ) -> Vec<Trade> {
        let s = &self.symbols[sym];
        let from_id = from_id.max(s.spec.first_trade_id);
        let mut out = Vec::with_capacity(limit.min(1024));
        if from_id > last_id || limit == 0 {
            return out;
        }
        let Some(mut minute) = self.minute_of(sym, from_id - s.spec.first_trade_id, false) else {
            return out;
        };
        while out.len() < limit {
            let Some(sk) = self.skeleton(sym, minute) else {
                break;
            };
            if sk.sec_first_id[0] > last_id {
                break;
            }
            let mut buf = Vec::new();
            for j in 0..60 {
                if sk.sec_first_id[j + 1] <= from_id {
                    continue;
                }
                self.materialise_second(sym, minute * 60 + j as i64, &sk, j, &mut buf);
                for t in buf.drain(..) {
                    if t.id >= from_id && t.id <= last_id && out.len() < limit {
                        out.push(t);
                    }
                }
                if out.len() >= limit || sk.sec_first_id[j + 1] > last_id {
                    return out;
                }
            }
            minute += 1;
        }
        out
    }

    /// Trades with `from_us <= time_us <= to_us`, at most `limit`, in id order.
    pub fn trades_between(&self, sym: usize, from_us: i64, to_us: i64, limit: usize) -> Vec<Trade> {
        let mut out = Vec::new();
        if to_us < from_us {
            return out;
        }
        let mut sec = from_us.max(self.genesis_us()).div_euclid(SEC_US);
        let mut buf = Vec::new();
        while sec * SEC_US <= to_us && out.len() < limit {
            buf.clear();
            self.second_into(sym, sec, &mut buf);
            for t in &buf {
                if t.time_us >= from_us && t.time_us <= to_us && out.len() < limit {
                    out.push(*t);
                }
            }
            sec += 1;
        }
        out
    }

    /// Up to `limit` aggregate trades from agg id `from_agg`, each with its fills, stopping at
    /// trades later than `until_us`.
    pub fn agg_trades_from(
        &self,
        sym: usize,
        from_agg: u64,
        until_us: i64,
        limit: usize,
    ) -> Vec<Vec<Trade>> {
        let s = &self.symbols[sym];
        let from_agg = from_agg.max(s.spec.first_agg_id);
        let mut out: Vec<Vec<Trade>> = Vec::new();
        let Some(mut minute) = self.minute_of(sym, from_agg - s.spec.first_agg_id, true) else {
            return out;
        };
        let mut buf = Vec::new();
        loop {
            let Some(sk) = self.skeleton(sym, minute) else {
                return out;
            };
            for j in 0..60 {
                if sk.sec_first_agg[j + 1] <= from_agg {
                    continue;
                }
                buf.clear();
                self.materialise_second(sym, minute * 60 + j as i64, &sk, j, &mut buf);
                for t in &buf {
                    if t.time_us > until_us {
                        return out;
                    }
                    if t.agg_id < from_agg {
                        continue;
                    }
                    match out.last_mut() {
                        Some(last) if last[0].agg_id == t.agg_id => last.push(*t),
                        _ => {
                            if out.len() == limit {
                                return out;
                            }
                            out.push(vec![*t]);
                        }
                    }
                }
            }
            if (minute + 1) * MIN_US > until_us {
                return out;
            }
            minute += 1;
        }
    }

    /// Aggregate of the trades with `from_us <= time_us <= to_us`, using cached whole minutes.
    pub fn agg_between(&self, sym: usize, from_us: i64, to_us: i64) -> Agg {
        let mut agg = Agg::default();
        let from_us = from_us.max(self.genesis_us());
        if to_us < from_us {
            return agg;
        }
        let mut t = from_us;
        while t <= to_us {
            let minute = t.div_euclid(MIN_US);
            let minute_end = (minute + 1) * MIN_US; // exclusive
            if t == minute * MIN_US && minute_end - 1 <= to_us {
                agg.merge(&self.minute_agg(sym, minute));
                t = minute_end;
                continue;
            }
            // Partial minute: second by second.
            let end = to_us.min(minute_end - 1);
            let part = self.trades_between(sym, t, end, usize::MAX);
            agg.merge(&Agg::of(&part));
            t = end + 1;
        }
        agg
    }

    /// The last trade strictly before `t_us`, if any.
    pub fn last_trade_before(&self, sym: usize, t_us: i64) -> Option<Trade> {
        let id = self.id_before(sym, t_us);
        let s = &self.symbols[sym];
        if id <= s.spec.first_trade_id {
            return None;
        }
        self.trades_from_id(sym, id - 1, id - 1, 1).pop()
    }

    /// Mid price (1e-8 units, on the tick grid) at the start of a minute; used for empty klines.
    pub fn anchor_price(&self, sym: usize, unix_minute: i64) -> u64 {
        let s = &self.symbols[sym];
        let k = self.minute_index(unix_minute).unwrap_or(0);
        let (cp, _) = self.checkpoints(sym, k);
        let tick_f = s.spec.tick_size as f64 / SCALE as f64;
        ((cp.x.exp() / tick_f).floor() as u64).max(1) * s.spec.tick_size
    }
}

/// Quantile table of the log-normal size distribution, in steps (median from the notional).
fn qty_table(seed: u64, key: u64, spec: &SymbolSpec) -> Vec<u64> {
    let step = spec.step_size as f64 / SCALE as f64;
    let median_steps = (spec.median_notional / spec.initial_price / step).max(1.0);
    let min_steps = (spec.min_qty / spec.step_size).max(1);
    let max_steps = (spec.max_qty / spec.step_size).max(min_steps);
    let mut rng = KeyedRng::new(seed, key, Stream::Skeleton, -1);
    let mut z: Vec<f64> = (0..QTY_TABLE).map(|_| rng.normal()).collect();
    z.sort_by(f64::total_cmp);
    z.iter()
        .map(|z| {
            let steps = (median_steps * (QTY_SIGMA * z).exp()).round() as u64;
            steps.clamp(min_steps, max_steps)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENESIS_MS: i64 = 1_751_068_800_000; // 2025-06-28 00:00 UTC

    fn tape() -> Tape {
        let specs: Vec<SymbolSpec> = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]
            .iter()
            .map(|s| SymbolSpec::for_symbol(s))
            .collect();
        Tape::new(42, &specs, 1.0, GENESIS_MS)
    }

    #[test]
    fn same_seed_same_trades_and_ids_are_consecutive() {
        let a = tape();
        let b = tape();
        let g = GENESIS_MS / 1000;
        let mut prev: Option<Trade> = None;
        for sec in g..g + 180 {
            let ta = a.second(0, sec);
            assert_eq!(ta, b.second(0, sec));
            for t in &ta {
                assert_eq!(t.time_us.div_euclid(SEC_US), sec);
                if let Some(p) = prev {
                    assert_eq!(t.id, p.id + 1, "ids consecutive");
                    assert!(t.time_us >= p.time_us, "times non-decreasing");
                    assert!(t.agg_id == p.agg_id || t.agg_id == p.agg_id + 1);
                }
                prev = Some(*t);
            }
        }
        let first = a.second(0, g)[0];
        assert_eq!(first.id, SymbolSpec::for_symbol("BTCUSDT").first_trade_id);
    }

    #[test]
    fn prices_and_sizes_are_on_the_grid_and_realistic() {
        let t = tape();
        let g = GENESIS_MS / 60_000;
        for (sym, tick, step) in [
            (0, 1_000_000, 1_000),
            (1, 1_000_000, 100_000),
            (2, 10_000, 10_000_000),
            (3, 10_000, 10_000_000),
        ] {
            let trades = t.minute_trades(sym, g + 5);
            assert!(!trades.is_empty());
            let spec = &t.symbols()[sym].spec;
            for tr in &trades {
                assert_eq!(tr.price % tick, 0);
                assert_eq!(tr.qty % step, 0);
                assert!(tr.qty >= spec.min_qty);
                let p = tr.price as f64 / SCALE as f64;
                assert!(
                    (p / spec.initial_price - 1.0).abs() < 0.05,
                    "{} price {p} far from {}",
                    spec.symbol,
                    spec.initial_price
                );
            }
        }
    }

    #[test]
    fn btc_rate_is_about_35_per_second() {
        let t = tape();
        let g = GENESIS_MS / 60_000;
        let n: usize = (0..120).map(|m| t.minute_trades(0, g + m).len()).sum();
        let rate = n as f64 / 7200.0;
        assert!((20.0..50.0).contains(&rate), "rate {rate}");
    }

    #[test]
    fn ids_from_time_and_time_from_ids_agree() {
        let t = tape();
        let g = GENESIS_MS * 1000;
        let at = g + 17 * MIN_US + 12_345_678;
        let id = t.id_before(0, at);
        let trades = t.trades_from_id(0, id - 3, id + 3, 10);
        assert_eq!(trades.len(), 7);
        assert_eq!(trades[0].id, id - 3);
        assert!(trades[2].time_us < at && trades[3].time_us >= at);
        assert_eq!(trades[3].id, id);
        assert_eq!(
            t.count_before(0, at),
            id - t.symbols()[0].spec.first_trade_id
        );
        // The window view returns the same trades.
        let win = t.trades_between(0, trades[0].time_us, trades[6].time_us, usize::MAX);
        assert!(win.iter().any(|w| *w == trades[3]));
    }

    #[test]
    fn minute_aggregates_match_trades() {
        let t = tape();
        let g = GENESIS_MS / 60_000;
        let from = (g + 3) * MIN_US;
        let to = (g + 9) * MIN_US + 30 * SEC_US; // ends mid-minute
        let trades = t.trades_between(1, from, to, usize::MAX);
        let direct = Agg::of(&trades);
        assert_eq!(t.agg_between(1, from, to), direct);
        assert_eq!(direct.count, t.id_before(1, to + 1) - t.id_before(1, from));
    }

    #[test]
    fn agg_trades_group_fills_with_same_price_time_side() {
        let t = tape();
        let g = GENESIS_MS * 1000;
        let first_agg = t.agg_id_before(0, g + 5 * MIN_US);
        let aggs = t.agg_trades_from(0, first_agg, g + 10 * MIN_US, 200);
        assert_eq!(aggs.len(), 200);
        for (i, a) in aggs.iter().enumerate() {
            assert_eq!(a[0].agg_id, first_agg + i as u64);
            for f in a {
                assert_eq!(
                    (f.price, f.time_us, f.is_buyer_maker),
                    (a[0].price, a[0].time_us, a[0].is_buyer_maker)
                );
            }
            for w in a.windows(2) {
                assert_eq!(w[1].id, w[0].id + 1);
            }
        }
        assert!(
            aggs.iter().any(|a| a.len() > 1),
            "some taker orders fill several makers"
        );
    }

    #[test]
    fn zero_rate_symbol_has_no_trades() {
        let mut spec = SymbolSpec::for_symbol("ARBUSDT");
        spec.trades_per_sec = 0.0;
        let t = Tape::new(1, &[spec], 1.0, GENESIS_MS);
        assert!(t.minute_trades(0, GENESIS_MS / 60_000 + 1).is_empty());
        assert_eq!(t.count_before(0, GENESIS_MS * 1000 + 10 * MIN_US), 0);
    }

    #[test]
    fn history_rate_scales_only_minutes_before_the_cut() {
        let cut_ms = GENESIS_MS + 60 * 60_000;
        let t = tape().with_history_rate(0.01, cut_ms);
        let g = GENESIS_MS / 60_000;
        let before: usize = (0..30).map(|m| t.minute_trades(0, g + m).len()).sum();
        let after: usize = (60..90).map(|m| t.minute_trades(0, g + m).len()).sum();
        // 35/s x 0.01 over 30 minutes is ~630 trades; at full rate ~63,000.
        assert!(before < 2_000, "history minutes scaled: {before}");
        assert!(after > 30_000, "live minutes keep the rate: {after}");
        // Ids stay consecutive across the cut.
        let last = t.minute_trades(0, g + 59).pop().unwrap();
        assert_eq!(t.minute_trades(0, g + 60)[0].id, last.id + 1);
    }

    #[test]
    fn nothing_before_genesis() {
        let t = tape();
        assert!(t.second(0, GENESIS_MS / 1000 - 1).is_empty());
        assert_eq!(t.count_before(0, GENESIS_MS * 1000 - 5), 0);
    }
}
