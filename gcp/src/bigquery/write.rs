//! Storage Write API appends of proto rows (the encoded `Trade`/`Gap` bytes, unchanged).
//!
//! We use the community `gcloud-bigquery` client here: the official one (0.19) writes Arrow only
//! and omits `write_stream` after the first request on a connection, which bqemulator rejects
//! (see `shared/LOCAL-EMULATORS.md`). An append either returns `Ok` (BigQuery durably has every
//! row of the request) or an [`AppendError`] whose [`Disposition`] says what to do next.

use futures::StreamExt as _;
use gcloud_bigquery::client::{Client, ClientConfig};
use gcloud_bigquery::storage_write::AppendRowsRequestBuilder;
use gcloud_gax::grpc::{Code, Status};
use gcloud_googleapis::cloud::bigquery::storage::v1::append_rows_response::Response;
use prost_types::DescriptorProto;

use crate::GcpTarget;

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
        // Committed streams only: the offset was already written, so these rows are durable.
        // Callers using offsets treat this as delivered; for us it is a success path, not retry.
        Code::AlreadyExists => Disposition::Retry,
        // Malformed request or rows: the same bytes will fail again.
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => Disposition::Reject,
        // Table or dataset missing, or we may not write to it: configuration, not data.
        Code::NotFound | Code::PermissionDenied | Code::Unauthenticated => Disposition::Reject,
        Code::Unimplemented | Code::DataLoss | Code::Ok => Disposition::Reject,
    }
}

/// Appends proto rows to tables through the default stream.
pub struct StorageWriter {
    client: Client,
}

impl StorageWriter {
    /// Connects to BigQuery (the emulator when the target has a gRPC endpoint).
    pub async fn connect(target: &GcpTarget) -> Result<Self, ConnectError> {
        let config = match (&target.bigquery_grpc_endpoint, &target.bigquery_endpoint) {
            (Some(grpc), Some(rest)) => ClientConfig::new_with_emulator(grpc, rest.clone()),
            (None, None) => {
                let (config, _project) = ClientConfig::new_with_auth()
                    .await
                    .map_err(|e| ConnectError(e.to_string()))?;
                config
            }
            _ => {
                return Err(ConnectError(
                    "set both the BigQuery REST and gRPC endpoints (emulator) or neither".into(),
                ));
            }
        };
        let client = Client::new(config)
            .await
            .map_err(|e| ConnectError(e.to_string()))?;
        Ok(Self { client })
    }

    /// Appends encoded rows to `table` (see [`super::table_path`]) through its default stream,
    /// in one request. `Ok` means BigQuery acknowledged every row.
    pub async fn append(
        &self,
        table: &str,
        descriptor: &DescriptorProto,
        rows: Vec<Vec<u8>>,
    ) -> Result<(), AppendError> {
        let stream = self
            .client
            .default_storage_writer()
            .create_write_stream(table)
            .await?;
        let request = AppendRowsRequestBuilder::new(descriptor.clone(), rows);
        let mut responses = stream.append_rows(vec![request]).await?;
        let mut answered = false;
        while let Some(response) = responses.next().await {
            let response = response?;
            answered = true;
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
        }
        if answered {
            Ok(())
        } else {
            Err(AppendError::NoResponse)
        }
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

    #[test]
    fn row_errors_reject_and_missing_answer_retries() {
        let e = AppendError::RowErrors(vec![(3, "bad NUMERIC".into())]);
        assert_eq!(e.disposition(), Disposition::Reject);
        assert!(e.to_string().contains("row 3"), "{e}");
        assert_eq!(AppendError::NoResponse.disposition(), Disposition::Retry);
    }
}
