//! Kline intervals, bucket alignment and trade aggregation (pure, no I/O).
//!
//! A kline row (Binance `GET /api/v3/klines`) is the [`Agg`] of the trades whose time falls in
//! `[open_time, close_time]`. Intervals are Binance's: `1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d
//! 3d 1w 1M`. Buckets are aligned to the Unix epoch shifted by the `timeZone` offset, weeks start
//! on Monday, months are calendar months.

use jiff::civil::Time;
use jiff::tz::Offset;
use jiff::{Timestamp, ToSpan};

use crate::decimal::mul_units;
use crate::trade::Trade;

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;
/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// A Binance kline interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// A fixed length in milliseconds (1s .. 3d).
    Fixed(i64),
    /// One week, starting Monday 00:00 in the requested time zone.
    Week,
    /// One calendar month.
    Month,
}

impl Interval {
    /// Parse Binance's interval names (case-sensitive: `1m` is a minute, `1M` a month).
    pub fn parse(raw: &str) -> Option<Self> {
        let ms = match raw {
            "1s" => 1_000,
            "1m" => MINUTE_MS,
            "3m" => 3 * MINUTE_MS,
            "5m" => 5 * MINUTE_MS,
            "15m" => 15 * MINUTE_MS,
            "30m" => 30 * MINUTE_MS,
            "1h" => 60 * MINUTE_MS,
            "2h" => 120 * MINUTE_MS,
            "4h" => 240 * MINUTE_MS,
            "6h" => 360 * MINUTE_MS,
            "8h" => 480 * MINUTE_MS,
            "12h" => 720 * MINUTE_MS,
            "1d" => DAY_MS,
            "3d" => 3 * DAY_MS,
            "1w" => return Some(Self::Week),
            "1M" => return Some(Self::Month),
            _ => return None,
        };
        Some(Self::Fixed(ms))
    }

    /// Start (ms, UTC) of the bucket containing `t_ms`, for a time zone `offset_ms` east of UTC.
    pub fn bucket_start(self, t_ms: i64, offset_ms: i64) -> i64 {
        let local = t_ms + offset_ms;
        let start_local = match self {
            Self::Fixed(len) => local.div_euclid(len) * len,
            // 1970-01-01 was a Thursday: Monday 1970-01-05 is day 4.
            Self::Week => {
                let day = local.div_euclid(DAY_MS);
                let monday = (day - 4).div_euclid(7) * 7 + 4;
                monday * DAY_MS
            }
            Self::Month => month_start(local, 0),
        };
        start_local - offset_ms
    }

    /// Start of the bucket after the one starting at `start_ms`.
    pub fn next_start(self, start_ms: i64, offset_ms: i64) -> i64 {
        match self {
            Self::Fixed(len) => start_ms + len,
            Self::Week => start_ms + 7 * DAY_MS,
            Self::Month => month_start(start_ms + offset_ms, 1) - offset_ms,
        }
    }

    /// Start of the bucket before the one starting at `start_ms`.
    pub fn prev_start(self, start_ms: i64, offset_ms: i64) -> i64 {
        self.bucket_start(start_ms - 1, offset_ms)
    }
}

/// Start (ms, local time read as UTC) of the calendar month `ahead` months after the one
/// containing `local_ms`. Times outside jiff's range (years -9999..=9999) are clamped to it, and
/// a month past that range reads as the range's end, so callers' "past `hi`" checks still stop.
fn month_start(local_ms: i64, ahead: i64) -> i64 {
    let (min, max) = (
        Timestamp::MIN.as_millisecond(),
        Timestamp::MAX.as_millisecond(),
    );
    let t = Timestamp::from_millisecond(local_ms.clamp(min, max)).unwrap_or(Timestamp::MAX);
    Offset::UTC
        .to_datetime(t)
        .date()
        .first_of_month()
        .checked_add(ahead.months())
        .ok()
        .and_then(|d| {
            Offset::UTC
                .to_timestamp(d.to_datetime(Time::midnight()))
                .ok()
        })
        .map_or(max, Timestamp::as_millisecond)
}

/// Parse Binance's `timeZone` parameter (`0`, `8`, `-1:30`, `+05:45`; range -12:00 to +14:00)
/// into an offset in ms.
pub fn parse_time_zone(raw: &str) -> Option<i64> {
    let (sign, rest) = match raw.as_bytes().first()? {
        b'-' => (-1, &raw[1..]),
        b'+' => (1, &raw[1..]),
        _ => (1, raw),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
        None => (rest.parse::<i64>().ok()?, 0),
    };
    if !(0..60).contains(&m) {
        return None;
    }
    let minutes = sign * (h * 60 + m);
    if !(-12 * 60..=14 * 60).contains(&minutes) {
        return None;
    }
    Some(minutes * MINUTE_MS)
}

/// Aggregate statistics of consecutive trades (a kline, a ticker window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    /// Number of trades.
    pub count: u64,
    /// Id of the first trade (meaningless when `count == 0`).
    pub first_id: u64,
    /// Id of the last trade.
    pub last_id: u64,
    /// Price of the first trade (1e-8 units).
    pub open: u64,
    /// Highest price.
    pub high: u64,
    /// Lowest price.
    pub low: u64,
    /// Price of the last trade.
    pub close: u64,
    /// Quantity of the last trade.
    pub close_qty: u64,
    /// `m` of the last trade.
    pub close_buyer_maker: bool,
    /// Sum of quantities.
    pub volume: u128,
    /// Sum of price x quantity.
    pub quote_volume: u128,
    /// Sum of quantities where the buyer was the taker (`m == false`).
    pub taker_buy_volume: u128,
    /// Sum of price x quantity where the buyer was the taker.
    pub taker_buy_quote: u128,
}

impl Agg {
    /// Add one trade (trades must come in id order).
    #[inline]
    pub fn push(&mut self, t: &Trade) {
        let quote = mul_units(t.price, t.qty);
        if self.count == 0 {
            self.first_id = t.id;
            self.open = t.price;
            self.high = t.price;
            self.low = t.price;
        } else {
            self.high = self.high.max(t.price);
            self.low = self.low.min(t.price);
        }
        self.count += 1;
        self.last_id = t.id;
        self.close = t.price;
        self.close_qty = t.qty;
        self.close_buyer_maker = t.is_buyer_maker;
        self.volume += u128::from(t.qty);
        self.quote_volume += quote;
        if !t.is_buyer_maker {
            self.taker_buy_volume += u128::from(t.qty);
            self.taker_buy_quote += quote;
        }
    }

    /// Append the aggregate of the trades that directly follow.
    pub fn merge(&mut self, later: &Agg) {
        if later.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *later;
            return;
        }
        self.count += later.count;
        self.last_id = later.last_id;
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.close_qty = later.close_qty;
        self.close_buyer_maker = later.close_buyer_maker;
        self.volume += later.volume;
        self.quote_volume += later.quote_volume;
        self.taker_buy_volume += later.taker_buy_volume;
        self.taker_buy_quote += later.taker_buy_quote;
    }

    /// Aggregate a slice of trades.
    pub fn of(trades: &[Trade]) -> Self {
        let mut a = Self::default();
        for t in trades {
            a.push(t);
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1s", Interval::Fixed(1_000))]
    #[case("1m", Interval::Fixed(60_000))]
    #[case("3d", Interval::Fixed(3 * DAY_MS))]
    #[case("1w", Interval::Week)]
    #[case("1M", Interval::Month)]
    fn parses_intervals(#[case] raw: &str, #[case] want: Interval) {
        assert_eq!(Interval::parse(raw), Some(want));
    }

    #[rstest]
    #[case("1y")]
    #[case("2m")]
    #[case("")]
    #[case("1H")]
    fn rejects_intervals(#[case] raw: &str) {
        assert_eq!(Interval::parse(raw), None);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2025-06-28 17:46:20 UTC (a Saturday), from the real trade frame's T.
        let t = 1_751_132_780_368;
        let week = Interval::Week.bucket_start(t, 0);
        assert_eq!(week, 1_750_636_800_000); // Monday 2025-06-23
        assert_eq!(Interval::Week.next_start(week, 0), week + 7 * DAY_MS);
        let month = Interval::Month.bucket_start(t, 0);
        assert_eq!(month, 1_748_736_000_000); // 2025-06-01
        assert_eq!(Interval::Month.next_start(month, 0), 1_751_328_000_000); // 2025-07-01
        assert_eq!(Interval::Month.prev_start(month, 0), 1_746_057_600_000); // 2025-05-01
        let dec = 1_733_011_200_000; // 2024-12-01
        assert_eq!(Interval::Month.next_start(dec, 0), 1_735_689_600_000); // 2025-01-01
        // Leap February, and a month start seen from UTC+8 (the local 1st is the 31st in UTC).
        assert_eq!(
            Interval::Month.next_start(1_706_745_600_000, 0),
            1_709_251_200_000
        );
        let off = 8 * 60 * MINUTE_MS;
        let mar_local = Interval::Month.bucket_start(1_709_251_200_000, off);
        assert_eq!(mar_local, 1_709_251_200_000 - off); // 2024-03-01 00:00 +08:00
        assert_eq!(
            Interval::Month.next_start(mar_local, off),
            1_711_929_600_000 - off // 2024-04-01 00:00 +08:00
        );
    }

    #[test]
    fn time_zone_shifts_day_buckets() {
        let t = 1_751_132_780_368;
        let off = parse_time_zone("+08:00").unwrap();
        let d = Interval::Fixed(DAY_MS).bucket_start(t, off);
        // 2025-06-29 00:00 in UTC+8 is 2025-06-28 16:00 UTC.
        assert_eq!(d, 1_751_126_400_000);
        assert_eq!(parse_time_zone("0"), Some(0));
        assert_eq!(parse_time_zone("-1:30"), Some(-90 * MINUTE_MS));
        assert_eq!(parse_time_zone("15"), None);
        assert_eq!(parse_time_zone("x"), None);
    }

    #[test]
    fn months_far_outside_the_calendar_do_not_panic() {
        assert!(Interval::Month.bucket_start(i64::MAX / 2, 0) <= i64::MAX / 2);
        assert!(Interval::Month.bucket_start(i64::MIN / 2, 0) >= i64::MIN / 2);
        let last = Interval::Month.bucket_start(i64::MAX / 2, 0);
        assert!(Interval::Month.next_start(last, 0) >= last);
    }

    fn trade(id: u64, price: u64, qty: u64, m: bool) -> Trade {
        Trade {
            id,
            agg_id: id,
            price,
            qty,
            time_us: id as i64,
            is_buyer_maker: m,
        }
    }

    #[test]
    fn agg_matches_trades_and_merge_is_concatenation() {
        let ts = [
            trade(1, 300, 100_000_000, true),
            trade(2, 500, 200_000_000, false),
            trade(3, 100, 100_000_000, true),
            trade(4, 400, 100_000_000, false),
        ];
        let all = Agg::of(&ts);
        assert_eq!(
            (all.open, all.high, all.low, all.close),
            (300, 500, 100, 400)
        );
        assert_eq!((all.count, all.first_id, all.last_id), (4, 1, 4));
        assert_eq!(all.volume, 500_000_000);
        assert_eq!(all.taker_buy_volume, 300_000_000);
        assert_eq!(all.quote_volume, 300 + 1000 + 100 + 400);
        let mut left = Agg::of(&ts[..2]);
        left.merge(&Agg::of(&ts[2..]));
        assert_eq!(left, all);
        let mut empty = Agg::default();
        empty.merge(&all);
        assert_eq!(empty, all);
    }
}
