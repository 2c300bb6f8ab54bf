//! Storage Write API appends of proto rows (the encoded `Trade`/`Gap` bytes, unchanged).
//!
//! We use the community `gcloud-bigquery` client's gRPC plumbing here: the official one (0.19)
//! writes Arrow only and omits `write_stream` after the first request on a connection, which
//! bqemulator rejects (see `docs/local-emulators.md`). An append either returns `Ok` (BigQuery
//! durably has every row of the request) or an [`AppendError`] whose [`AppendError::disposition`]
//! says what to do next.
//!
//! Connections: one long-lived `AppendRows` connection per table, reused for every append, as
//! Google's best practices ask ("use one connection for as many data writes as possible; don't
//! open and close streams for many small writes",
//! <https://cloud.google.com/bigquery/docs/write-api-best-practices#connection_pool_management>).
//! The default stream's name is fixed (`<table>/streams/_default`), so no `GetWriteStream` call
//! is needed either. Each request carries `write_stream` and the schema (the API allows both on
//! any request; bqemulator needs `write_stream` on every one). One request is outstanding per
//! connection at a time, so the next response is the answer to it. A connection is put back only
//! after a clean answer: an error, a timeout (the caller dropping the future) or a connection the
//! server closed while idle makes the next append open a fresh one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt as _;
use futures::SinkExt as _;
use futures::channel::mpsc;
use gcloud_bigquery::client::google_cloud_auth::{
    project::Config, token::DefaultTokenSourceProvider,
};
use gcloud_bigquery::grpc::apiv1::conn_pool::{AUDIENCE, ConnectionManager, SCOPES};
use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::grpc::{Status, Streaming};
use gcloud_googleapis::cloud::bigquery::storage::v1::append_rows_request::{ProtoData, Rows};
use gcloud_googleapis::cloud::bigquery::storage::v1::append_rows_response::Response;
use gcloud_googleapis::cloud::bigquery::storage::v1::{
    AppendRowsRequest, AppendRowsResponse, ProtoRows, ProtoSchema,
};
use prost_types::DescriptorProto;

use crate::GcpTarget;

/// The gRPC status code inside [`AppendError::Rpc`], re-exported so that callers can match on
/// it without depending on the client crate that defines it.
pub use gcloud_gax::grpc::Code;

/// What the caller must do after an append attempt that did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing was written; the same rows can be sent again after a backoff.
    Retry,
    /// The request can never succeed as it is (bad rows, missing table, no permission): do not
    /// retry; dead-letter the rows or fail loudly.
    Reject,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The RPC failed with a status; [`classify`] gives the disposition.
    #[error("AppendRows failed with {code:?}: {message}")]
    Rpc {
        /// gRPC status code.
        code: Code,
        /// Server message.
        message: String,
    },
    /// BigQuery refused some rows of the request, so none of it was written. Each entry is the
    /// row's index in the request and the reason. Remove or dead-letter those rows, retry the rest.
    #[error("BigQuery rejected {} row(s), first: row {} ({})", .0.len(), .0[0].0, .0[0].1)]
    RowErrors(Vec<(i64, String)>),
    /// The server closed the stream without answering. The outcome is unknown: retry (the
    /// default stream is at-least-once; the deduplicating view absorbs a repeat).
    #[error("AppendRows stream ended without a response")]
    NoResponse,
}

impl AppendError {
    /// Retry or reject.
    pub fn disposition(&self) -> Disposition {
        match self {
            AppendError::Rpc { code, .. } => classify(*code),
            AppendError::RowErrors(_) => Disposition::Reject,
            AppendError::NoResponse => Disposition::Retry,
        }
    }
}

impl From<Status> for AppendError {
    fn from(status: Status) -> Self {
        AppendError::Rpc {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// The one place that decides what each Storage Write status code means for us.
/// Codes per <https://cloud.google.com/bigquery/docs/write-api#error_handling>.
pub fn classify(code: Code) -> Disposition {
    match code {
        // Server or network trouble: nothing durable happened that we can rely on; try again.
        Code::Unavailable | Code::Internal | Code::DeadlineExceeded | Code::Aborted => {
            Disposition::Retry
        }
        // Quota or throughput limits: back off and retry.
        Code::ResourceExhausted => Disposition::Retry,
        // Cancelled by our own shutdown or a dropped connection: the rows were not acked; retry.
        Code::Cancelled | Code::Unknown => Disposition::Retry,
        // Means "a row at this offset was already written", which only an append with offsets
        // (to a committed or pending stream) can get. Our appends go to the default stream and
        // carry no offset, so the code says nothing about whether our rows are durable; calling
        // it a success could ack rows BigQuery does not have. Retrying is safe: the default
        // stream is at-least-once anyway and the deduplicating view absorbs a repeat.
        Code::AlreadyExists => Disposition::Retry,
        // Malformed request or rows: the same bytes will fail again.
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => Disposition::Reject,
        // Table or dataset missing, or we may not write to it: configuration, not data.
        Code::NotFound | Code::PermissionDenied | Code::Unauthenticated => Disposition::Reject,
        Code::Unimplemented | Code::DataLoss | Code::Ok => Disposition::Reject,
    }
}

/// A bounded metric label for a status code: its gRPC name in snake case, e.g.
/// `invalid_argument`.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// gRPC channels to the Storage Write service; appends to one table share one connection, so
/// two are plenty (trades and gaps).
const CHANNELS: usize = 2;

/// One open `AppendRows` connection: requests go into `requests`, answers come from `responses`
/// in the same order.
struct Connection {
    requests: mpsc::Sender<AppendRowsRequest>,
    responses: Streaming<AppendRowsResponse>,
}

impl Connection {
    /// Whether the server has visibly ended this connection while it sat idle (nothing is
    /// outstanding, so anything ready now is its end or an error). Best effort: a close the
    /// runtime has not yet read from the OS passes, and that append then fails as `NoResponse`,
    /// which the caller retries on a fresh connection.
    fn ended(&mut self) -> bool {
        self.responses.message().now_or_never().is_some()
    }
}

/// Appends proto rows to tables through their default streams, one long-lived connection per
/// table.
pub struct StorageWriter {
    connections: ConnectionManager,
    idle: Mutex<HashMap<String, Connection>>,
    opened: AtomicU64,
}

impl StorageWriter {
    /// Connects to BigQuery (the emulator when the target has a gRPC endpoint).
    pub async fn connect(target: &GcpTarget) -> Result<Self, ConnectError> {
        let environment = match (&target.bigquery_grpc_endpoint, &target.bigquery_endpoint) {
            (Some(grpc), Some(_rest)) => Environment::Emulator(grpc.clone()),
            (None, None) => {
                let config = Config::default()
                    .with_audience(AUDIENCE)
                    .with_scopes(&SCOPES);
                let tokens = DefaultTokenSourceProvider::new(config)
                    .await
                    .map_err(|e| ConnectError(e.to_string()))?;
                Environment::GoogleCloud(Box::new(tokens))
            }
            _ => {
                return Err(ConnectError(
                    "set both the BigQuery REST and gRPC endpoints (emulator) or neither".into(),
                ));
            }
        };
        // No request timeout: it would cut the long-lived connection; the caller bounds each
        // append with its own deadline.
        let options = ConnectionOptions {
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..ConnectionOptions::default()
        };
        let connections = ConnectionManager::new(CHANNELS, &environment, &options)
            .await
            .map_err(|e| ConnectError(e.to_string()))?;
        Ok(Self {
            connections,
            idle: Mutex::new(HashMap::new()),
            opened: AtomicU64::new(0),
        })
    }

    /// How many `AppendRows` connections this writer has opened or tried to (one per table in a
    /// healthy run; each failed append costs one more).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Appends encoded rows to `table` (see [`super::table_path`]) through its default stream,
    /// in one request. `Ok` means BigQuery acknowledged every row.
    ///
    /// Cancel-safe in the sense that matters: dropping the future (a timeout) drops the
    /// connection with it, so no later append reads this request's answer.
    pub async fn append(
        &self,
        table: &str,
        descriptor: &DescriptorProto,
        rows: Vec<Vec<u8>>,
    ) -> Result<(), AppendError> {
        let request = AppendRowsRequest {
            write_stream: format!("{table}/streams/_default"),
            rows: Some(Rows::ProtoRows(ProtoData {
                writer_schema: Some(ProtoSchema {
                    proto_descriptor: Some(descriptor.clone()),
                }),
                rows: Some(ProtoRows {
                    serialized_rows: rows,
                }),
            })),
            ..AppendRowsRequest::default()
        };
        let mut connection = match self.take_idle(table) {
            Some(mut c) => {
                c.requests
                    .send(request)
                    .await
                    .map_err(|_| AppendError::NoResponse)?;
                c
            }
            None => self.open(request).await?,
        };
        let response = connection.responses.message().await?;
        let response = response.ok_or(AppendError::NoResponse)?;
        if !response.row_errors.is_empty() {
            return Err(AppendError::RowErrors(
                response
                    .row_errors
                    .into_iter()
                    .map(|e| (e.index, e.message))
                    .collect(),
            ));
        }
        if let Some(Response::Error(status)) = response.response {
            return Err(AppendError::Rpc {
                code: Code::from_i32(status.code),
                message: status.message,
            });
        }
        self.idle
            .lock()
            .expect("idle connections lock")
            .insert(table.to_owned(), connection);
        Ok(())
    }

    /// The table's idle connection, unless the server has closed it meanwhile.
    fn take_idle(&self, table: &str) -> Option<Connection> {
        let mut connection = self
            .idle
            .lock()
            .expect("idle connections lock")
            .remove(table)?;
        if connection.ended() {
            tracing::debug!(
                table,
                "the AppendRows connection was closed while idle; reopening"
            );
            return None;
        }
        Some(connection)
    }

    /// Opens a connection with `first` as its first request. The request is queued before the
    /// call is made: a server may hold its response headers until it has read one.
    async fn open(&self, first: AppendRowsRequest) -> Result<Connection, AppendError> {
        let (mut requests, outgoing) = mpsc::channel(1);
        requests
            .try_send(first)
            .expect("a new channel has room for one request");
        self.opened.fetch_add(1, Ordering::Relaxed);
        let responses = self
            .connections
            .writer()
            .append_rows(outgoing)
            .await?
            .into_inner();
        Ok(Connection {
            requests,
            responses,
        })
    }
}

/// The BigQuery Storage client could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect the BigQuery Storage Write client: {0}")]
pub struct ConnectError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_retry_and_data_codes_reject() {
        for code in [Code::Unavailable, Code::Internal, Code::ResourceExhausted] {
            assert_eq!(classify(code), Disposition::Retry, "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
        ] {
            assert_eq!(classify(code), Disposition::Reject, "{code:?}");
        }
    }

    /// The default stream carries no offsets, so `ALREADY_EXISTS` cannot vouch for our rows.
    #[test]
    fn already_exists_is_retried_not_taken_as_delivered() {
        assert_eq!(classify(Code::AlreadyExists), Disposition::Retry);
    }

    #[test]
    fn row_errors_reject_and_missing_answer_retries() {
        let e = AppendError::RowErrors(vec![(3, "bad NUMERIC".into())]);
        assert_eq!(e.disposition(), Disposition::Reject);
        assert!(e.to_string().contains("row 3"), "{e}");
        assert_eq!(AppendError::NoResponse.disposition(), Disposition::Retry);
    }
}
