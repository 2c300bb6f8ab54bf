//! Poison messages go to the dead-letter topic with the reason as attributes, and only then are
//! they acked. The emulator has no dead-letter policy, so the consumer does this itself (the
//! behaviour is the same in the cloud, where Terraform also sets the policy as a backstop).
//!
//! A letter keeps the original payload and attributes, and adds `reason` (a stable code),
//! `reason_detail`, `subscription` and `original_message_id` (and `original_ordering_key`). An
//! original attribute of one of these names (gap records carry their own `reason`) is kept as
//! `original_attribute_<name>`, so `consumer replay` can restore the message exactly. If the
//! publish fails the message is nacked, not acked: it comes back and is dead-lettered on a later
//! attempt.

use std::collections::HashMap;
use std::future::Future;

use bytes::Bytes;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;

use crate::decode::Poison;

/// Pub/Sub attribute values are at most 1024 bytes
/// (<https://cloud.google.com/pubsub/quotas#resource_limits>).
pub const ATTRIBUTE_VALUE_MAX_BYTES: usize = 1024;

/// One message for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The original payload, unchanged.
    pub data: Bytes,
    /// The original attributes plus ours (see [`letter_attributes`]).
    pub attributes: HashMap<String, String>,
    /// The original ordering key (kept so a replay preserves per-symbol order).
    pub ordering_key: String,
}

/// The attribute names a letter adds (besides `original_ordering_key`, added on publish).
pub const LETTER_ATTRIBUTES: [&str; 4] = [
    "reason",
    "reason_detail",
    "subscription",
    "original_message_id",
];

/// Prefix under which an original attribute of one of the [`LETTER_ATTRIBUTES`] names is kept.
pub const CLASHING_ATTRIBUTE_PREFIX: &str = "original_attribute_";

/// The attributes of a letter: the originals, then `reason`, `reason_detail`, `subscription`,
/// `original_message_id`; an original of one of these names moves to
/// `original_attribute_<name>`.
pub fn letter_attributes(
    original: &HashMap<String, String>,
    poison: &Poison,
    subscription: &str,
    message_id: &str,
) -> HashMap<String, String> {
    let mut out = original.clone();
    for name in LETTER_ATTRIBUTES {
        if let Some(value) = out.remove(name) {
            out.insert(format!("{CLASHING_ATTRIBUTE_PREFIX}{name}"), value);
        }
    }
    out.insert("reason".into(), poison.reason.code().into());
    out.insert(
        "reason_detail".into(),
        truncate(&poison.detail, ATTRIBUTE_VALUE_MAX_BYTES).into(),
    );
    out.insert("subscription".into(), subscription.into());
    out.insert("original_message_id".into(), message_id.into());
    out
}

/// The longest prefix of `s` within `max` bytes, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The dead-letter publish failed; the message is nacked and retried later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead-letter publish failed: {0}")]
pub struct DeadLetterError(pub String);

/// Publishes letters. `Ok` means Pub/Sub stored it.
pub trait DeadLetter: Send + Sync + 'static {
    /// Publishes one letter and waits for the server's answer.
    fn publish(&self, letter: Letter) -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// The dead-letter topic through the official publisher.
pub struct PubsubDeadLetter {
    publisher: Publisher,
}

impl PubsubDeadLetter {
    /// Builds a publisher for `topic` (short name).
    pub async fn connect(
        target: &gcp::GcpTarget,
        topic: &str,
    ) -> Result<Self, gcp::pubsub::PubsubError> {
        // Poison is rare: publish each letter at once rather than waiting to fill a batch.
        let batching = gcp::pubsub::Batching {
            max_messages: 100,
            max_bytes: 1_000_000,
            max_delay: std::time::Duration::from_millis(1),
        };
        Ok(Self {
            publisher: gcp::pubsub::publisher(target, topic, batching).await?,
        })
    }
}

impl DeadLetter for PubsubDeadLetter {
    async fn publish(&self, letter: Letter) -> Result<(), DeadLetterError> {
        // No ordering key on the dead-letter topic (a failed key pauses publishing for it in the
        // client, and order among poison messages does not matter); keep it as an attribute.
        let mut attributes = letter.attributes;
        if !letter.ordering_key.is_empty() {
            attributes.insert("original_ordering_key".into(), letter.ordering_key);
        }
        let message = Message::new()
            .set_data(letter.data)
            .set_attributes(attributes);
        self.publisher
            .publish(message)
            .await
            .map(|_id| ())
            .map_err(|e| DeadLetterError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Reason;

    #[test]
    fn letters_keep_the_original_attributes_and_add_the_reason() {
        let original: HashMap<String, String> =
            [("symbol".to_owned(), "BTCUSDT".to_owned())].into();
        let poison = Poison::new(Reason::InvalidValue, "field \"price\": \"1e5\"");
        let attrs = letter_attributes(&original, &poison, "subs", "m-1");
        assert_eq!(attrs["symbol"], "BTCUSDT");
        assert_eq!(attrs["reason"], "invalid_value");
        assert_eq!(attrs["reason_detail"], "field \"price\": \"1e5\"");
        assert_eq!(attrs["subscription"], "subs");
        assert_eq!(attrs["original_message_id"], "m-1");
    }

    #[test]
    fn an_original_attribute_of_a_letter_name_is_kept_aside() {
        let original: HashMap<String, String> = [
            ("symbol".to_owned(), "STXUSDT".to_owned()),
            ("reason".to_owned(), "ids_unavailable".to_owned()),
        ]
        .into();
        let poison = Poison::new(Reason::Undecodable, "x");
        let attrs = letter_attributes(&original, &poison, "gaps-sub", "m-2");
        assert_eq!(attrs["reason"], "undecodable");
        assert_eq!(attrs["original_attribute_reason"], "ids_unavailable");
    }

    #[test]
    fn long_details_are_cut_within_the_attribute_limit_on_a_char_boundary() {
        let detail = "é".repeat(ATTRIBUTE_VALUE_MAX_BYTES); // 2 bytes each
        let poison = Poison::new(Reason::Undecodable, detail);
        let attrs = letter_attributes(&HashMap::new(), &poison, "s", "m");
        let cut = &attrs["reason_detail"];
        assert!(cut.len() <= ATTRIBUTE_VALUE_MAX_BYTES);
        assert_eq!(cut.len(), ATTRIBUTE_VALUE_MAX_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
