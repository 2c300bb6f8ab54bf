//! Pub/Sub: publisher and subscriber construction, and idempotent set-up of topics and
//! subscriptions (used by the local stack and the tests; in the cloud, Terraform owns them).

use std::collections::BTreeMap;
use std::time::Duration;

use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{ExpirationPolicy, Subscription, Topic};

use crate::GcpTarget;

/// Pub/Sub set-up or connection failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PubsubError {
    /// A client could not be built (bad endpoint, no credentials). Fix the configuration.
    #[error("cannot build the Pub/Sub {what} client: {source}")]
    Build {
        /// Which client.
        what: &'static str,
        /// The underlying error.
        source: google_cloud_gax::client_builder::Error,
    },
    /// An admin call failed; the message names the resource.
    #[error("Pub/Sub {action} {resource} failed: {source}")]
    Admin {
        /// What we tried, e.g. "create topic".
        action: &'static str,
        /// The full resource name.
        resource: String,
        /// The underlying error.
        source: google_cloud_pubsub::Error,
    },
    /// A time outside what a protobuf Timestamp can hold (years 0001..=9999).
    #[error("time out of range for Pub/Sub: {0}")]
    Time(String),
}

/// `projects/{project}/topics/{topic}`.
pub fn topic_path(project: &str, topic: &str) -> String {
    format!("projects/{project}/topics/{topic}")
}

/// `projects/{project}/subscriptions/{subscription}`.
pub fn subscription_path(project: &str, subscription: &str) -> String {
    format!("projects/{project}/subscriptions/{subscription}")
}

/// Publisher batching thresholds. Pub/Sub's own limits: 1000 messages and 10 MB per publish
/// request (<https://cloud.google.com/pubsub/quotas#resource_limits>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Send a batch when it holds this many messages (at most 1000).
    pub max_messages: u32,
    /// Send a batch when it holds this many bytes (at most 10 MB).
    pub max_bytes: u32,
    /// Send a batch at the latest this long after its first message.
    pub max_delay: Duration,
}

impl Default for Batching {
    /// Trades are ~100 bytes: 1000 per batch stays far below 10 MB, and 10 ms keeps the
    /// exchange-to-Pub/Sub latency low at Binance's quiet rates.
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 1_000_000,
            max_delay: Duration::from_millis(10),
        }
    }
}

/// Builds a publisher for one topic (short name, e.g. `binance-trades`).
pub async fn publisher(
    target: &GcpTarget,
    topic: &str,
    batching: Batching,
) -> Result<Publisher, PubsubError> {
    let mut builder = Publisher::builder(topic_path(&target.project, topic))
        .set_message_count_threshold(batching.max_messages)
        .set_byte_threshold(batching.max_bytes)
        .set_delay_threshold(batching.max_delay);
    if let Some(endpoint) = &target.pubsub_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(creds) = GcpTarget::credentials_for(target.pubsub_endpoint.as_deref()) {
        builder = builder.with_credentials(creds);
    }
    builder.build().await.map_err(|source| PubsubError::Build {
        what: "publisher",
        source,
    })
}

/// Builds a subscriber client (streams are opened per subscription with `subscribe`).
pub async fn subscriber(target: &GcpTarget) -> Result<Subscriber, PubsubError> {
    let mut builder = Subscriber::builder();
    if let Some(endpoint) = &target.pubsub_endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(creds) = GcpTarget::credentials_for(target.pubsub_endpoint.as_deref()) {
        builder = builder.with_credentials(creds);
    }
    builder.build().await.map_err(|source| PubsubError::Build {
        what: "subscriber",
        source,
    })
}

/// Options for [`Admin::ensure_subscription`], mirroring what Terraform sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// Ack deadline in seconds (10..=600).
    pub ack_deadline_secs: i32,
    /// Deliver messages with the same ordering key in order.
    pub ordering: bool,
    /// Optional filter, e.g. `attributes.symbol = "BTCUSDT"`.
    pub filter: Option<String>,
    /// Delete the subscription after this long without activity (Pub/Sub's minimum is 1 day).
    /// `None`: the server's default (31 days).
    pub expire_after: Option<Duration>,
    /// How long unacked messages are kept; `None`: the server's default (7 days).
    pub message_retention: Option<Duration>,
    /// Labels (lower-case keys and values), e.g. who created the subscription.
    pub labels: BTreeMap<String, String>,
}

impl Default for SubscriptionSpec {
    fn default() -> Self {
        Self {
            ack_deadline_secs: 60,
            ordering: true,
            filter: None,
            expire_after: None,
            message_retention: None,
            labels: BTreeMap::new(),
        }
    }
}

/// What [`Admin::subscription`] tells of an existing subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The topic's full path.
    pub topic: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its expiration TTL: `None` when it never expires or the server did not say.
    pub expire_after: Option<Duration>,
    /// Its filter (empty: none).
    pub filter: String,
}

fn wkt_duration(d: Duration) -> Result<google_cloud_wkt::Duration, PubsubError> {
    google_cloud_wkt::Duration::try_from(d).map_err(|e| PubsubError::Time(e.to_string()))
}

/// Topic and subscription administration.
pub struct Admin {
    project: String,
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
}

impl Admin {
    /// Connects the admin clients.
    pub async fn connect(target: &GcpTarget) -> Result<Self, PubsubError> {
        let mut topics = TopicAdmin::builder();
        let mut subscriptions = SubscriptionAdmin::builder();
        if let Some(endpoint) = &target.pubsub_endpoint {
            topics = topics.with_endpoint(endpoint.clone());
            subscriptions = subscriptions.with_endpoint(endpoint.clone());
        }
        if let Some(creds) = GcpTarget::credentials_for(target.pubsub_endpoint.as_deref()) {
            topics = topics.with_credentials(creds.clone());
            subscriptions = subscriptions.with_credentials(creds);
        }
        Ok(Self {
            project: target.project.clone(),
            topics: topics.build().await.map_err(|source| PubsubError::Build {
                what: "topic admin",
                source,
            })?,
            subscriptions: subscriptions
                .build()
                .await
                .map_err(|source| PubsubError::Build {
                    what: "subscription admin",
                    source,
                })?,
        })
    }

    /// Creates the topic unless it exists.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), PubsubError> {
        let name = topic_path(&self.project, topic);
        let result = self
            .topics
            .create_topic()
            .set_name(name.clone())
            .send()
            .await
            .map(|_: Topic| ());
        ok_if_exists(result, "create topic", name)
    }

    /// Creates the subscription on `topic` unless it exists.
    pub async fn ensure_subscription(
        &self,
        subscription: &str,
        topic: &str,
        spec: &SubscriptionSpec,
    ) -> Result<(), PubsubError> {
        self.create_subscription(subscription, topic, spec)
            .await
            .map(|_| ())
    }

    /// Like [`Admin::ensure_subscription`], but tells whether this call created the subscription
    /// (`true`) or found it already there (`false`, its settings untouched), so that a caller
    /// deletes only what it created.
    pub async fn create_subscription(
        &self,
        subscription: &str,
        topic: &str,
        spec: &SubscriptionSpec,
    ) -> Result<bool, PubsubError> {
        let name = subscription_path(&self.project, subscription);
        let mut request = self
            .subscriptions
            .create_subscription()
            .set_name(name.clone())
            .set_topic(topic_path(&self.project, topic))
            .set_ack_deadline_seconds(spec.ack_deadline_secs)
            .set_enable_message_ordering(spec.ordering);
        if let Some(filter) = &spec.filter {
            request = request.set_filter(filter.clone());
        }
        if let Some(ttl) = spec.expire_after {
            request =
                request.set_expiration_policy(ExpirationPolicy::new().set_ttl(wkt_duration(ttl)?));
        }
        if let Some(retention) = spec.message_retention {
            request = request.set_message_retention_duration(wkt_duration(retention)?);
        }
        if !spec.labels.is_empty() {
            request = request.set_labels(spec.labels.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.status().map(|s| s.code) == Some(Code::AlreadyExists) => Ok(false),
            Err(source) => Err(PubsubError::Admin {
                action: "create subscription",
                resource: name,
                source,
            }),
        }
    }

    /// The subscription's topic, labels and expiration, or `None` if it does not exist.
    pub async fn subscription(
        &self,
        subscription: &str,
    ) -> Result<Option<SubscriptionInfo>, PubsubError> {
        let name = subscription_path(&self.project, subscription);
        match self
            .subscriptions
            .get_subscription()
            .set_subscription(name.clone())
            .send()
            .await
        {
            Ok(s) => Ok(Some(info(s))),
            Err(e) if e.status().map(|s| s.code) == Some(Code::NotFound) => Ok(None),
            Err(source) => Err(PubsubError::Admin {
                action: "get subscription",
                resource: name,
                source,
            }),
        }
    }

    /// Seeks a subscription to a point in time: messages published before `time` are marked
    /// acknowledged, later ones (retained) are delivered again. Seeking to now drops a backlog.
    pub async fn seek_to_time(
        &self,
        subscription: &str,
        time: std::time::SystemTime,
    ) -> Result<(), PubsubError> {
        let name = subscription_path(&self.project, subscription);
        // Protobuf timestamps span years 0001..=9999; anything else is a caller bug.
        let time = google_cloud_wkt::Timestamp::try_from(time)
            .map_err(|e| PubsubError::Time(e.to_string()))?;
        self.subscriptions
            .seek()
            .set_subscription(name.clone())
            .set_time(time)
            .send()
            .await
            .map(|_| ())
            .map_err(|source| PubsubError::Admin {
                action: "seek subscription",
                resource: name,
                source,
            })
    }

    /// Deletes a subscription; a missing one is not an error.
    pub async fn delete_subscription(&self, subscription: &str) -> Result<(), PubsubError> {
        let name = subscription_path(&self.project, subscription);
        match self
            .subscriptions
            .delete_subscription()
            .set_subscription(name.clone())
            .send()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.status().map(|s| s.code) == Some(Code::NotFound) => Ok(()),
            Err(source) => Err(PubsubError::Admin {
                action: "delete subscription",
                resource: name,
                source,
            }),
        }
    }
}

fn info(s: Subscription) -> SubscriptionInfo {
    SubscriptionInfo {
        topic: s.topic,
        labels: s.labels.into_iter().collect(),
        expire_after: s
            .expiration_policy
            .and_then(|p| p.ttl)
            .and_then(|ttl| Duration::try_from(ttl).ok()),
        filter: s.filter,
    }
}

fn ok_if_exists(
    result: Result<(), google_cloud_pubsub::Error>,
    action: &'static str,
    resource: String,
) -> Result<(), PubsubError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.status().map(|s| s.code) == Some(Code::AlreadyExists) => Ok(()),
        Err(source) => Err(PubsubError::Admin {
            action,
            resource,
            source,
        }),
    }
}
