//! A pure, size-aware batcher: rows go in with their encoded size, batches come out closed by
//! count, bytes or age. No I/O and no clock of its own: the caller passes `now`.
//!
//! The byte limit protects BigQuery's AppendRows request limit of 10 MB
//! (<https://cloud.google.com/bigquery/quotas#write-api-limits>). Each row is counted with its
//! protobuf framing inside `ProtoRows.serialized_rows` (tag + length prefix), and the request's
//! own overhead (writer schema, stream name) is reserved by [`REQUEST_OVERHEAD_BYTES`]. A row
//! bigger than the whole budget is refused alone ([`Oversized`]) instead of poisoning a batch.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// AppendRows request size limit, 10 MB
/// (<https://cloud.google.com/bigquery/quotas#write-api-limits>).
pub const APPEND_ROWS_MAX_BYTES: usize = 10 * 1024 * 1024;

/// Room kept in every request for the writer schema (~1 KB for `Trade`), the stream name and
/// framing; generous on purpose.
pub const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;

/// When a batch closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many rows.
    pub max_rows: usize,
    /// At most this many bytes of framed rows (see [`framed_size`]).
    pub max_bytes: usize,
    /// At most this long after the first row went in.
    pub max_age: Duration,
}

/// The bytes one encoded row takes inside `ProtoRows`: a one-byte tag, the varint length, the row.
pub fn framed_size(row_len: usize) -> usize {
    let mut varint = 1;
    let mut n = row_len >> 7;
    while n > 0 {
        varint += 1;
        n >>= 7;
    }
    1 + varint + row_len
}

/// Why a batch closed (a metric label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// It reached `max_rows`.
    Count,
    /// The next row would not have fitted in `max_bytes` (or it is exactly full).
    Bytes,
    /// It reached `max_age`.
    Age,
    /// The caller asked for everything (shutdown).
    Drain,
}

/// A closed batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<T> {
    /// The items, in arrival order.
    pub items: Vec<T>,
    /// Their framed size in bytes.
    pub bytes: usize,
    /// Why it closed.
    pub closed: Closed,
}

/// A row too large for any request; the caller dead-letters it.
#[derive(Debug, PartialEq, Eq)]
pub struct Oversized<T> {
    /// The refused item.
    pub item: T,
    /// Its framed size.
    pub bytes: usize,
}

/// The open batch and the closed ones not yet taken.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: Limits,
    open: Vec<T>,
    open_bytes: usize,
    opened_at: Option<Instant>,
    ready: VecDeque<Batch<T>>,
}

impl<T> Batcher<T> {
    /// An empty batcher. `limits.max_bytes` is capped at the AppendRows budget.
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_rows: limits.max_rows.max(1),
            max_bytes: limits
                .max_bytes
                .min(APPEND_ROWS_MAX_BYTES - REQUEST_OVERHEAD_BYTES),
            max_age: limits.max_age,
        };
        Self {
            limits,
            open: Vec::new(),
            open_bytes: 0,
            opened_at: None,
            ready: VecDeque::new(),
        }
    }

    /// Adds an item of `row_len` encoded bytes. Closes the open batch first when the item would
    /// not fit, and after it when the batch is full.
    pub fn push(&mut self, item: T, row_len: usize, now: Instant) -> Result<(), Oversized<T>> {
        let bytes = framed_size(row_len);
        if bytes > self.limits.max_bytes {
            return Err(Oversized { item, bytes });
        }
        if !self.open.is_empty() && self.open_bytes + bytes > self.limits.max_bytes {
            self.close(Closed::Bytes);
        }
        if self.open.is_empty() {
            self.opened_at = Some(now);
        }
        self.open.push(item);
        self.open_bytes += bytes;
        if self.open.len() >= self.limits.max_rows {
            self.close(Closed::Count);
        } else if self.open_bytes == self.limits.max_bytes {
            self.close(Closed::Bytes);
        }
        Ok(())
    }

    /// The next closed batch, closing the open one first if it is `max_age` old at `now`.
    pub fn pop_ready(&mut self, now: Instant) -> Option<Batch<T>> {
        if self.ready.is_empty()
            && let Some(deadline) = self.deadline()
            && now >= deadline
        {
            self.close(Closed::Age);
        }
        self.ready.pop_front()
    }

    /// Every remaining row, closed batches first then the open one (for shutdown).
    pub fn drain(&mut self) -> Vec<Batch<T>> {
        if !self.open.is_empty() {
            self.close(Closed::Drain);
        }
        self.ready.drain(..).collect()
    }

    /// When the open batch reaches its age limit; `None` when nothing is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.limits.max_age)
    }

    /// Rows held, open and closed.
    pub fn len(&self) -> usize {
        self.open.len() + self.ready.iter().map(|b| b.items.len()).sum::<usize>()
    }

    /// True when no row is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn close(&mut self, closed: Closed) {
        let items = std::mem::take(&mut self.open);
        let bytes = std::mem::replace(&mut self.open_bytes, 0);
        self.opened_at = None;
        self.ready.push_back(Batch {
            items,
            bytes,
            closed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(rows: usize, bytes: usize) -> Limits {
        Limits {
            max_rows: rows,
            max_bytes: bytes,
            max_age: Duration::from_secs(1),
        }
    }

    #[test]
    fn framing_counts_tag_and_varint_length() {
        assert_eq!(framed_size(0), 2);
        assert_eq!(framed_size(127), 129);
        assert_eq!(framed_size(128), 131);
        assert_eq!(framed_size(16_384), 16_388);
    }

    #[test]
    fn empty_batcher_has_nothing_ready_and_no_deadline() {
        let mut b: Batcher<u32> = Batcher::new(limits(10, 1000));
        let now = Instant::now();
        assert_eq!(b.deadline(), None);
        assert_eq!(b.pop_ready(now + Duration::from_secs(3600)), None);
        assert!(b.drain().is_empty());
    }

    #[test]
    fn closes_exactly_at_the_row_count() {
        let mut b = Batcher::new(limits(3, 1000));
        let now = Instant::now();
        for i in 0..3 {
            assert_eq!(b.pop_ready(now), None, "not full before row {i}");
            b.push(i, 10, now).unwrap();
        }
        let batch = b.pop_ready(now).unwrap();
        assert_eq!(batch.items, vec![0, 1, 2]);
        assert_eq!(batch.closed, Closed::Count);
        assert_eq!(batch.bytes, 3 * framed_size(10));
        assert!(b.is_empty());
    }

    #[test]
    fn exactly_full_by_bytes_closes_and_one_more_byte_starts_a_new_batch() {
        let row = framed_size(48); // 50
        let mut b = Batcher::new(limits(100, 2 * row));
        let now = Instant::now();
        b.push('a', 48, now).unwrap();
        b.push('b', 48, now).unwrap();
        let full = b.pop_ready(now).unwrap();
        assert_eq!(
            (full.items.len(), full.bytes, full.closed),
            (2, 100, Closed::Bytes)
        );

        b.push('c', 48, now).unwrap();
        b.push('d', 49, now).unwrap(); // 50 + 51 > 100: 'c' closes alone
        let first = b.pop_ready(now).unwrap();
        assert_eq!(first.items, vec!['c']);
        assert_eq!(first.closed, Closed::Bytes);
        assert_eq!(b.pop_ready(now), None, "'d' is still open");
        assert_eq!(b.drain()[0].items, vec!['d']);
    }

    #[test]
    fn an_oversized_row_is_refused_alone_and_the_batch_is_untouched() {
        let mut b = Batcher::new(limits(10, 100));
        let now = Instant::now();
        b.push(1, 10, now).unwrap();
        let err = b.push(2, 99, now).unwrap_err();
        assert_eq!(err.item, 2);
        assert_eq!(err.bytes, framed_size(99));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn the_byte_limit_never_exceeds_the_append_rows_budget() {
        let mut b = Batcher::new(limits(usize::MAX, usize::MAX));
        let now = Instant::now();
        let big = 3 * 1024 * 1024;
        for i in 0..4 {
            b.push(i, big, now).unwrap();
        }
        let first = b.pop_ready(now).unwrap();
        assert_eq!(first.items.len(), 3);
        assert!(first.bytes <= APPEND_ROWS_MAX_BYTES - REQUEST_OVERHEAD_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn closes_by_age_from_the_first_row() {
        let mut b = Batcher::new(limits(10, 1000));
        let t0 = Instant::now();
        b.push(1, 10, t0).unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        b.push(2, 10, Instant::now()).unwrap();
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        tokio::time::advance(Duration::from_millis(399)).await;
        assert_eq!(b.pop_ready(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        let batch = b.pop_ready(Instant::now()).unwrap();
        assert_eq!((batch.items, batch.closed), (vec![1, 2], Closed::Age));
        assert_eq!(b.deadline(), None);
    }

    proptest! {
        /// Whatever the sizes and limits: every row comes out exactly once, in order, and no
        /// batch breaks a limit.
        #[test]
        fn rows_come_out_once_in_order_within_limits(
            sizes in proptest::collection::vec(0usize..400, 0..200),
            max_rows in 1usize..20,
            max_bytes in 405usize..3000,
        ) {
            let mut b = Batcher::new(limits(max_rows, max_bytes));
            let now = Instant::now();
            let mut out = Vec::new();
            for (i, s) in sizes.iter().enumerate() {
                b.push(i, *s, now).unwrap();
                while let Some(batch) = b.pop_ready(now) {
                    out.push(batch);
                }
            }
            out.extend(b.drain());
            let flat: Vec<usize> = out.iter().flat_map(|b| b.items.clone()).collect();
            prop_assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
            for batch in &out {
                prop_assert!(!batch.items.is_empty());
                prop_assert!(batch.items.len() <= max_rows);
                prop_assert!(batch.bytes <= max_bytes);
                let sum: usize = batch.items.iter().map(|i| framed_size(sizes[*i])).sum();
                prop_assert_eq!(sum, batch.bytes);
            }
        }
    }
}
