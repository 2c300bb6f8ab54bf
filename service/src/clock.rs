//! Wall-clock time since the Unix epoch, as the contracts store it (`*_time` fields are µs).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch. A clock set before 1970 reads as 0 rather than panicking:
/// every contract time is validated downstream, so such a value is refused, not stored.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_are_after_2017() {
        let us = now_us();
        assert!(us > 1_483_228_800_000_000, "{us}");
    }
}
