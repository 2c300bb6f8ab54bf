//! A bounded window of recently landed keys, so that a redelivered message or a trade the
//! producer sent twice (stream and REST backfill overlap) does not become a second row. Pure.
//!
//! This is a cost saver, not the guarantee: it lives in one process's memory, is empty after a
//! restart and is not shared between replicas. The guarantee ("one row per (symbol, trade_id) in
//! what users query") is the `market.trades` view's `QUALIFY ROW_NUMBER() ... = 1`.
//!
//! Keys are inserted only after BigQuery acknowledged their row: a key remembered before that
//! would make a redelivery of a row that never landed look like a duplicate, and lose it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// What the window knows about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not in the window.
    New,
    /// Landed earlier from the same Pub/Sub message: a redelivery.
    Redelivery,
    /// Landed earlier from another message: the producer published it twice.
    Duplicate,
}

/// The last `capacity` keys, oldest evicted first, each with a hash of the message id that
/// carried it.
#[derive(Debug)]
pub struct Window<K> {
    capacity: usize,
    keys: HashMap<K, u64>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    /// A window of at most `capacity` keys; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            keys: HashMap::with_capacity(capacity.min(1 << 20)),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
        }
    }

    /// Whether `key` landed recently, and from which message.
    pub fn check(&self, key: &K, message_id: &str) -> Seen {
        match self.keys.get(key) {
            None => Seen::New,
            Some(h) if *h == hash_id(message_id) => Seen::Redelivery,
            Some(_) => Seen::Duplicate,
        }
    }

    /// Remembers a key whose row BigQuery acknowledged.
    pub fn insert(&mut self, key: K, message_id: &str) {
        if self.capacity == 0 {
            return;
        }
        if self.keys.insert(key.clone(), hash_id(message_id)).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// FNV-1a of the message id: 8 bytes per key instead of the id string; a collision only
/// mislabels a duplicate as a redelivery in the metrics.
fn hash_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tells_redeliveries_from_duplicates() {
        let mut w = Window::new(10);
        let k = ("BTCUSDT".to_owned(), 7);
        assert_eq!(w.check(&k, "m1"), Seen::New);
        w.insert(k.clone(), "m1");
        assert_eq!(w.check(&k, "m1"), Seen::Redelivery);
        assert_eq!(w.check(&k, "m2"), Seen::Duplicate);
        assert_eq!(w.check(&("ARBUSDT".to_owned(), 7), "m1"), Seen::New);
    }

    #[test]
    fn evicts_the_oldest_beyond_capacity_and_zero_remembers_nothing() {
        let mut w = Window::new(2);
        for i in 0..3 {
            w.insert(i, "m");
        }
        assert_eq!(w.len(), 2);
        assert_eq!(w.check(&0, "m"), Seen::New);
        assert_eq!(w.check(&2, "m"), Seen::Redelivery);
        let mut none = Window::new(0);
        none.insert(1, "m");
        assert!(none.is_empty());
    }

    proptest! {
        /// The window behaves as a FIFO of distinct keys bounded by `capacity`.
        #[test]
        fn matches_a_fifo_of_distinct_keys(keys in proptest::collection::vec(0u16..50, 0..300),
                                           capacity in 1usize..40) {
            let mut w = Window::new(capacity);
            let mut model: VecDeque<u16> = VecDeque::new();
            for k in &keys {
                w.insert(*k, "m");
                if !model.contains(k) {
                    model.push_back(*k);
                    if model.len() > capacity {
                        model.pop_front();
                    }
                }
            }
            prop_assert_eq!(w.len(), model.len());
            for k in 0u16..50 {
                let want = if model.contains(&k) { Seen::Redelivery } else { Seen::New };
                prop_assert_eq!(w.check(&k, "m"), want);
            }
        }
    }
}
