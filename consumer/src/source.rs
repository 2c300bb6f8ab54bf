//! Where messages come from: the [`MessageSource`] and [`Ack`] traits (so the run loop is tested
//! with a fake) and their streaming-pull implementation over the official `google-cloud-pubsub`.
//!
//! The client does the lease work: it extends every outstanding message's ack deadline (by
//! `lease_extension`, for at most `max_lease`) until we ack or nack it, so a batch that waits for
//! BigQuery keeps its messages. It also batches acks into few `Acknowledge` RPCs. Flow control
//! (`max_outstanding_messages`/`_bytes`) makes the server stop sending while that much is
//! unacked, which bounds our memory during a BigQuery outage.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::subscriber::MessageStream;
use google_cloud_pubsub::subscriber::handler::Handler;

/// One pulled message.
#[derive(Debug)]
pub struct Received<A> {
    /// The payload (an encoded `Trade` or `Gap`).
    pub data: Bytes,
    /// Pub/Sub attributes.
    pub attributes: HashMap<String, String>,
    /// Server-assigned id; the same on redelivery.
    pub message_id: String,
    /// Ordering key (the symbol), kept for dead letters.
    pub ordering_key: String,
    /// Settles the message.
    pub ack: A,
}

/// Settles one message. Dropping it without either is a nack in the real client.
pub trait Ack: Send + 'static {
    /// Done: never deliver again.
    fn ack(self);
    /// Not done: deliver again (possibly elsewhere) soon.
    fn nack(self);
}

/// A stream of messages.
pub trait MessageSource: Send + 'static {
    /// The settle handle.
    type Ack: Ack;
    /// The next message; `Err` when the stream broke (the caller reconnects).
    fn next(&mut self) -> impl Future<Output = Result<Received<Self::Ack>, String>> + Send;
    /// Opens a fresh stream after an error. Handles of the old stream may no longer settle.
    fn reconnect(&mut self) -> impl Future<Output = ()> + Send;
    /// Stops pulling and waits (bounded by the caller) for pending acks to reach the server.
    fn shutdown(self) -> impl Future<Output = ()> + Send;
}

impl Ack for Handler {
    fn ack(self) {
        Handler::ack(self);
    }
    fn nack(self) {
        Handler::nack(self);
    }
}

/// Streaming-pull settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSettings {
    /// Full subscription path.
    pub subscription: String,
    /// Flow control: unacked messages per stream.
    pub max_outstanding_messages: i64,
    /// Flow control: unacked bytes per stream.
    pub max_outstanding_bytes: i64,
    /// Each lease extension's length.
    pub lease_extension: Duration,
    /// Stop extending after this long.
    pub max_lease: Duration,
}

/// One subscription through the official client.
pub struct PubsubSource {
    client: Subscriber,
    settings: PullSettings,
    stream: MessageStream,
}

impl PubsubSource {
    /// Opens the stream (lazily: the connection is made on the first `next`).
    pub fn new(client: Subscriber, settings: PullSettings) -> Self {
        let stream = open(&client, &settings);
        Self {
            client,
            settings,
            stream,
        }
    }
}

fn open(client: &Subscriber, s: &PullSettings) -> MessageStream {
    client
        .subscribe(s.subscription.clone())
        .set_max_outstanding_messages(s.max_outstanding_messages)
        .set_max_outstanding_bytes(s.max_outstanding_bytes)
        .set_max_lease_extension(s.lease_extension)
        .set_max_lease(s.max_lease)
        .build()
}

impl MessageSource for PubsubSource {
    type Ack = Handler;

    async fn next(&mut self) -> Result<Received<Handler>, String> {
        match self.stream.next().await {
            Some(Ok((message, handler))) => Ok(Received {
                data: message.data,
                attributes: message.attributes,
                message_id: message.message_id,
                ordering_key: message.ordering_key,
                ack: handler,
            }),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("the streaming pull ended".to_owned()),
        }
    }

    async fn reconnect(&mut self) {
        let old = std::mem::replace(&mut self.stream, open(&self.client, &self.settings));
        // Let the old stream send the acks already given to it; its other messages are
        // redelivered when their leases lapse.
        let token = old.shutdown_token();
        let _ = tokio::time::timeout(Duration::from_secs(5), token.shutdown()).await;
    }

    async fn shutdown(self) {
        self.stream.shutdown_token().shutdown().await;
    }
}

/// Settles nothing: the message was acked when it was pulled (see [`AckOnReceipt`]).
#[derive(Debug)]
pub struct AlreadyAcked;

impl Ack for AlreadyAcked {
    fn ack(self) {}
    fn nack(self) {}
}

/// FAULT INJECTION (`--unsafe-ack-on-receipt`): acks every message as soon as it is pulled,
/// before BigQuery has its row, which is exactly the bug that loses trades when the consumer
/// dies with rows held. Exists so that the chaos test can prove it notices such a loss.
pub struct AckOnReceipt<S>(pub S);

impl<S: MessageSource> MessageSource for AckOnReceipt<S> {
    type Ack = AlreadyAcked;

    async fn next(&mut self) -> Result<Received<AlreadyAcked>, String> {
        let m = self.0.next().await?;
        m.ack.ack();
        Ok(Received {
            data: m.data,
            attributes: m.attributes,
            message_id: m.message_id,
            ordering_key: m.ordering_key,
            ack: AlreadyAcked,
        })
    }

    async fn reconnect(&mut self) {
        self.0.reconnect().await;
    }

    async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
