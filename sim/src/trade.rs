//! One trade, as the tape defines it and every payload renders it.

/// One trade of the tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    /// Trade id (`t`), consecutive per symbol.
    pub id: u64,
    /// Aggregate trade id (`a` of aggTrades) this trade belongs to.
    pub agg_id: u64,
    /// Price in 1e-8 units, a multiple of the tick.
    pub price: u64,
    /// Quantity in 1e-8 units, a multiple of the step.
    pub qty: u64,
    /// Trade time in µs since the epoch.
    pub time_us: i64,
    /// `m`: the buyer was the maker (the taker sold).
    pub is_buyer_maker: bool,
}

impl Trade {
    /// Trade time in ms (Binance's default time unit).
    pub fn time_ms(&self) -> i64 {
        self.time_us.div_euclid(1000)
    }
}
