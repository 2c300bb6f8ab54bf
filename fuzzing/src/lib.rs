//! Fuzz targets for the three places the pipeline reads bytes it does not control, each a pure
//! function holding the invariants beyond "does not panic", and the pieces of `fuzz-smoke`, a
//! stable mutational runner seeded from the repository's fixtures.
//!
//! - [`frame`]: a websocket text frame through [`binance::parse_frame`] (both time units), what
//!   the producer does with a trade (prost encoding, attributes), and the consumer's decode of
//!   that message; a serde reference parse of the same text.
//! - [`consumer`]: a Pub/Sub message (data + attributes, see [`consumer_input`]) through the
//!   consumer's decode and validate, against an oracle re-derived from the contract.
//! - [`rest`]: a REST response (status, headers, body, see [`rest_input`]) through
//!   [`binance::rest::classify`]; on 2xx the body goes through [`rest_rows`] as the client's would.
//! - [`rest_rows`]: a REST body through the serde decoding of every endpoint the client calls,
//!   and each `historicalTrades` row through [`binance::parse_rest_trade`].
//!
//! A target panics (an `invariant:` message) when an invariant breaks, so both runners treat an
//! invariant break like a crash. [`run_bounded`] adds the allocation bound of [`alloc::bound`].
//!
//! `docs/fuzzing.md` says how to run the short and the long run and what they found.

pub mod alloc;
pub mod mutate;
pub mod rng;
pub mod seeds;
mod targets;

use std::borrow::Cow;

pub use targets::frame::frame;
pub use targets::pubsub::{Attributes, consumer, consumer_input, split_consumer_input};
pub use targets::rest::{rest, rest_input, rest_rows, split_rest_input};
pub use targets::{RECEIVE_TIME_US, numeric_fits};

/// What one input came to: accepted or rejected, and a short class (a bounded label: the
/// error's kind and field, never the input's text) for the run's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The code under test accepted the input (a trade, a key, an outcome, a decoded body).
    pub accepted: bool,
    /// What it was accepted as, or why it was rejected.
    pub class: Cow<'static, str>,
}

impl Verdict {
    /// An accepted input.
    pub fn accepted(class: impl Into<Cow<'static, str>>) -> Self {
        Self {
            accepted: true,
            class: class.into(),
        }
    }

    /// A rejected input.
    pub fn rejected(class: impl Into<Cow<'static, str>>) -> Self {
        Self {
            accepted: false,
            class: class.into(),
        }
    }
}

/// The fuzz targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// [`frame`].
    Frame,
    /// [`consumer`].
    Consumer,
    /// [`rest`].
    Rest,
    /// [`rest_rows`].
    RestRows,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 4] = [
        Target::Frame,
        Target::Consumer,
        Target::Rest,
        Target::RestRows,
    ];

    /// The name used on command lines, in file names and as the cargo-fuzz target name.
    pub const fn name(self) -> &'static str {
        match self {
            Target::Frame => "frame",
            Target::Consumer => "consumer",
            Target::Rest => "rest",
            Target::RestRows => "rest_rows",
        }
    }

    /// The target of a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs the target on one input (panics when an invariant breaks).
    pub fn run(self, data: &[u8]) -> Verdict {
        match self {
            Target::Frame => frame(data),
            Target::Consumer => consumer(data),
            Target::Rest => rest(data),
            Target::RestRows => rest_rows(data),
        }
    }
}

/// Runs `target` on `data` under [`alloc::measure`], and panics when the input held more live
/// heap than [`alloc::bound`] allows. What the cargo-fuzz targets call.
pub fn run_bounded(target: Target, data: &[u8]) -> (Verdict, alloc::AllocStats) {
    let (verdict, stats) = alloc::measure(|| target.run(data));
    let bound = alloc::bound(data.len());
    assert!(
        stats.peak <= bound,
        "invariant: {} held {} live heap bytes for a {}-byte input (bound {bound})",
        target.name(),
        stats.peak,
        data.len()
    );
    (verdict, stats)
}
