//! One function that classifies a Binance REST response, with a reason per status code.
//!
//! Source for every code: Binance spot `rest-api.md` "General API Information" / "LIMITS" and
//! `errors.md`, and for the 451 restricted-location answer the user reports collected in
//! `docs/binance.md` ("451: restricted location"); every rule used is summarised there.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::wire::ApiError;

/// Header carrying the IP's weight used in the current minute. Source: `rest-api.md` "LIMITS".
pub const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";

/// Wait assumed after a 429 without a usable `Retry-After`: one full weight window.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Wait assumed after a 418 without a usable `Retry-After`: Binance's shortest IP ban
/// ("from 2 minutes to 3 days", `rest-api.md` "LIMITS").
pub const DEFAULT_BAN: Duration = Duration::from_secs(120);

/// Longest wait a `Retry-After` is taken for: Binance's longest IP ban ("from 2 minutes to 3
/// days", `rest-api.md` "LIMITS"). A larger value (a broken proxy, `18446744073709551615`) is
/// cut to this, so that callers can add any wait to an `Instant` (`Instant + Duration` panics on
/// overflow) and a budget is never blocked for ever.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// What a response means for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the body is the answer.
    Ok,
    /// 429: over the request-weight limit. Stop all requests for `wait`, then retry.
    RetryAfter {
        /// From `Retry-After` (seconds), else [`DEFAULT_RETRY_AFTER`].
        wait: Duration,
        /// Binance's message.
        msg: String,
    },
    /// 418: the IP is banned for ignoring 429s. No request may be sent for `wait`.
    Banned {
        /// From `Retry-After` (seconds), else [`DEFAULT_BAN`].
        wait: Duration,
        /// Binance's message.
        msg: String,
    },
    /// 451: Binance refuses this location. Retrying cannot help; only running elsewhere can.
    GeoBlocked {
        /// Binance's message.
        msg: String,
    },
    /// 5xx or 408: the outcome is unknown (Binance: "the request may or may not have been
    /// executed"); market-data GETs are safe to retry.
    Transient {
        /// HTTP status.
        status: u16,
        /// Binance's message or the start of the body.
        detail: String,
    },
    /// Any other status (4xx, unexpected 1xx/3xx): the request is wrong and will stay wrong.
    Permanent {
        /// HTTP status.
        status: u16,
        /// Binance's error code (e.g. -1121 invalid symbol), when the body had one.
        code: Option<i64>,
        /// Binance's message, or the start of the body.
        msg: String,
    },
}

/// Classifies one response. `body` is only read for messages; it may be empty.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Outcome {
    let api_error = serde_json::from_slice::<ApiError>(body).ok();
    let msg = || match &api_error {
        Some(e) => e.msg.clone(),
        None => body_excerpt(body),
    };
    match status {
        // Success.
        200..=299 => Outcome::Ok,
        // Over the weight limit: back off for Retry-After; continuing earns a 418.
        429 => Outcome::RetryAfter {
            wait: retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER),
            msg: msg(),
        },
        // IP banned for ignoring 429s: nothing may be sent until Retry-After.
        418 => Outcome::Banned {
            wait: retry_after(headers).unwrap_or(DEFAULT_BAN),
            msg: msg(),
        },
        // Restricted location (the US, US cloud regions, ...): no retry can fix it.
        451 => Outcome::GeoBlocked { msg: msg() },
        // Request timeout: nothing was executed, safe to retry.
        408 => Outcome::Transient {
            status,
            detail: msg(),
        },
        // Binance's side failed or timed out; outcome unknown, GETs are idempotent: retry.
        500..=599 => Outcome::Transient {
            status,
            detail: msg(),
        },
        // 403 (WAF), 400 (bad parameter, -1121 invalid symbol), 404, ...: fix the request.
        _ => Outcome::Permanent {
            status,
            code: api_error.as_ref().map(|e| e.code),
            msg: msg(),
        },
    }
}

/// `X-MBX-USED-WEIGHT-1M`, when present and numeric.
pub fn used_weight(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(USED_WEIGHT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Retry-After` in seconds (the form Binance sends), when present and numeric, at most
/// [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// The start of a body, for messages (at most 200 bytes, lossy UTF-8).
pub fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const RESTRICTED: &[u8] = include_bytes!("../../tests/fixtures/rest_451_restricted.json");

    #[test]
    fn each_status_class() {
        let none = HeaderMap::new();
        assert_eq!(classify(200, &none, b"[]"), Outcome::Ok);
        assert_eq!(
            classify(
                429,
                &headers(&[("retry-after", "17")]),
                br#"{"code":-1003,"msg":"Too much request weight used"}"#
            ),
            Outcome::RetryAfter {
                wait: Duration::from_secs(17),
                msg: "Too much request weight used".into()
            }
        );
        assert_eq!(
            classify(429, &none, b""),
            Outcome::RetryAfter {
                wait: DEFAULT_RETRY_AFTER,
                msg: String::new()
            }
        );
        assert_eq!(
            classify(418, &headers(&[("retry-after", "7200")]), b"{}"),
            Outcome::Banned {
                wait: Duration::from_secs(7200),
                msg: "{}".into()
            }
        );
        assert_eq!(
            classify(418, &headers(&[("retry-after", "soon")]), b""),
            Outcome::Banned {
                wait: DEFAULT_BAN,
                msg: String::new()
            }
        );
        match classify(451, &none, RESTRICTED) {
            Outcome::GeoBlocked { msg } => assert!(msg.contains("restricted location"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(503, &none, b"Service Unavailable"),
            Outcome::Transient { status: 503, ref detail } if detail == "Service Unavailable"
        ));
        assert!(matches!(
            classify(408, &none, b""),
            Outcome::Transient { status: 408, .. }
        ));
        assert_eq!(
            classify(400, &none, br#"{"code":-1121,"msg":"Invalid symbol."}"#),
            Outcome::Permanent {
                status: 400,
                code: Some(-1121),
                msg: "Invalid symbol.".into()
            }
        );
        assert!(matches!(
            classify(403, &none, b"<html>WAF</html>"),
            Outcome::Permanent {
                status: 403,
                code: None,
                ..
            }
        ));
    }

    #[test]
    fn header_readers() {
        let h = headers(&[("x-mbx-used-weight-1m", " 1234 "), ("x-other", "1")]);
        assert_eq!(used_weight(&h), Some(1234));
        assert_eq!(
            used_weight(&headers(&[("x-mbx-used-weight-1m", "n/a")])),
            None
        );
        let mut r = HeaderMap::new();
        r.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&r), Some(Duration::from_secs(3)));
    }

    /// Found by fuzzing (`docs/fuzzing.md`): a `Retry-After` of `u64::MAX` seconds was passed
    /// on as is, and the producer's `Instant::now() + wait` panicked on it.
    #[test]
    fn a_huge_retry_after_is_capped_so_callers_can_add_it_to_an_instant() {
        for (status, value) in [
            (429, "18446744073709551615"),
            (418, " 9223372036854775807 "),
        ] {
            let wait = match classify(status, &headers(&[("retry-after", value)]), b"") {
                Outcome::RetryAfter { wait, .. } | Outcome::Banned { wait, .. } => wait,
                other => panic!("{other:?}"),
            };
            assert_eq!(wait, MAX_RETRY_AFTER);
            assert!(std::time::Instant::now().checked_add(wait).is_some());
        }
        // At and below the cap the header is taken as it is.
        let three_days = headers(&[("retry-after", "259200")]);
        assert_eq!(retry_after(&three_days), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "259199")])),
            Some(MAX_RETRY_AFTER - Duration::from_secs(1))
        );
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = vec![b'x'; 1000];
        match classify(502, &HeaderMap::new(), &body) {
            Outcome::Transient { detail, .. } => assert_eq!(detail.len(), 203),
            other => panic!("{other:?}"),
        }
    }
}
