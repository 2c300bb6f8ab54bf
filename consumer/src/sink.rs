//! Where rows go: the [`RowSink`] trait (so the run loop is tested with a fake) and its BigQuery
//! implementation over `gcp::bigquery::write::StorageWriter`.
//!
//! Stream choice: the **default stream**. It is at-least-once (a retried append after an unknown
//! outcome can write a row twice), needs no stream creation, finalisation or commit, costs
//! nothing extra, and has no per-stream state to lose when a replica dies; duplicates are
//! absorbed by the `market.trades` view. Committed streams with offsets give exactly-once per
//! stream and connection, but the offset would have to be tied to the Pub/Sub message, and
//! Pub/Sub offers no sequence that survives redelivery to another replica; each replica would
//! also need its own streams, created and finalised, under a quota of concurrent streams. That
//! is complexity and quota for a guarantee the view already gives across replicas.

use std::future::Future;

use bytes::Bytes;
use gcp::bigquery::write::{AppendError, Disposition, StorageWriter, classify, code_label};
use prost_types::DescriptorProto;

/// The tables the consumer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `market.trades_raw`.
    Trades,
    /// `market.gaps`.
    Gaps,
}

impl Table {
    /// A bounded metric label and log field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Table::Trades => "trades_raw",
            Table::Gaps => "gaps",
        }
    }
}

/// Why an append did not land, and what the caller must do.
///
/// The rule: only rows BigQuery names in row errors ([`SinkError::RowErrors`]), or rows that fail
/// our own checks before they get here, are poison. A request refused as a whole
/// ([`SinkError::Refused`]) says nothing against any one row: a dropped or retyped column
/// (BigQuery answers `INVALID_ARGUMENT` "Input schema has more fields than BigQuery schema"), a
/// missing table or dataset, a revoked permission. Its rows are held and retried until the table
/// or the permission is fixed; dead-lettering them would move every good trade out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Transient (outage, quota, timeout, unknown outcome): send the same rows again after a
    /// backoff. Nothing may be acked.
    #[error("retryable: {0}")]
    Retry(String),
    /// BigQuery refused these rows (index in the request, reason) and wrote none of the request:
    /// dead-letter them and append the others again.
    #[error("{} row(s) refused{}", .0.len(), first_row_error(.0))]
    RowErrors(Vec<(usize, String)>),
    /// BigQuery refused the request as a whole (schema drift, table or dataset missing, no
    /// permission): no row is to blame. Hold every row, retry with a capped backoff, report
    /// unhealthy; the rows land once the cause is fixed.
    #[error("refused ({code}): {reason}")]
    Refused {
        /// A bounded metric label: the gRPC status in snake case, e.g. `invalid_argument`.
        code: &'static str,
        /// The server's message.
        reason: String,
    },
}

fn first_row_error(rows: &[(usize, String)]) -> String {
    rows.first()
        .map(|(i, reason)| format!(", first: row {i} ({reason})"))
        .unwrap_or_default()
}

/// Appends encoded proto rows to a table. `Ok` means BigQuery durably has every row.
pub trait RowSink: Send + Sync + 'static {
    /// One AppendRows call.
    fn append(
        &self,
        table: Table,
        rows: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Maps the Storage Write client's error to what the loop does. A refusing status
/// ([`Disposition::Reject`]) is never taken as bad data: it is [`SinkError::Refused`].
pub fn sink_error(error: AppendError) -> SinkError {
    match error {
        AppendError::RowErrors(rows) => SinkError::RowErrors(
            rows.into_iter()
                .map(|(i, reason)| (usize::try_from(i).unwrap_or(usize::MAX), reason))
                .collect(),
        ),
        AppendError::Rpc { code, message } if classify(code) == Disposition::Reject => {
            SinkError::Refused {
                code: code_label(code),
                reason: message,
            }
        }
        other => match other.disposition() {
            Disposition::Retry => SinkError::Retry(other.to_string()),
            Disposition::Reject => SinkError::Refused {
                code: "rejected",
                reason: other.to_string(),
            },
        },
    }
}

/// BigQuery through the Storage Write API's default stream.
pub struct BigQuerySink {
    writer: StorageWriter,
    trades_table: String,
    gaps_table: String,
    trade_descriptor: DescriptorProto,
    gap_descriptor: DescriptorProto,
}

impl BigQuerySink {
    /// Connects the writer for `<project>.<dataset>.trades_raw` and `.gaps`.
    pub async fn connect(
        target: &gcp::GcpTarget,
        dataset: &str,
    ) -> Result<Self, gcp::bigquery::write::ConnectError> {
        let writer = StorageWriter::connect(target).await?;
        Ok(Self {
            writer,
            trades_table: gcp::bigquery::table_path(
                &target.project,
                dataset,
                gcp::bigquery::tables::TRADES_RAW,
            ),
            gaps_table: gcp::bigquery::table_path(
                &target.project,
                dataset,
                gcp::bigquery::tables::GAPS,
            ),
            // Both messages are compiled into trade-proto; their absence is a build bug.
            trade_descriptor: trade_proto::message_descriptor("Trade")
                .expect("Trade is in the descriptor set"),
            gap_descriptor: trade_proto::message_descriptor("Gap")
                .expect("Gap is in the descriptor set"),
        })
    }
}

impl RowSink for BigQuerySink {
    async fn append(&self, table: Table, rows: Vec<Bytes>) -> Result<(), SinkError> {
        let (path, descriptor) = match table {
            Table::Trades => (&self.trades_table, &self.trade_descriptor),
            Table::Gaps => (&self.gaps_table, &self.gap_descriptor),
        };
        let rows = rows.into_iter().map(|b| b.to_vec()).collect();
        self.writer
            .append(path, descriptor, rows)
            .await
            .map_err(sink_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcp::bigquery::write::Code;

    #[test]
    fn each_error_maps_to_one_action() {
        let rpc = |code, message: &str| AppendError::Rpc {
            code,
            message: message.into(),
        };
        assert!(matches!(
            sink_error(rpc(Code::Unavailable, "down")),
            SinkError::Retry(m) if m.contains("down")
        ));
        assert!(matches!(
            sink_error(AppendError::NoResponse),
            SinkError::Retry(_)
        ));
        assert_eq!(
            sink_error(AppendError::RowErrors(vec![(2, "bad NUMERIC".into())])),
            SinkError::RowErrors(vec![(2, "bad NUMERIC".into())])
        );
    }

    /// Schema drift, a missing table and a revoked permission refuse the request as a whole:
    /// an outage, never bad data (which would dead-letter every good trade).
    #[test]
    fn a_request_refused_as_a_whole_is_an_outage_not_bad_data() {
        let cases = [
            (
                Code::InvalidArgument,
                "Input schema has more fields than BigQuery schema, extra fields: 'source'",
                "invalid_argument",
            ),
            (Code::OutOfRange, "out of range", "out_of_range"),
            (Code::NotFound, "Table not found", "not_found"),
            (
                Code::PermissionDenied,
                "no bigquery.tables.updateData",
                "permission_denied",
            ),
        ];
        for (code, message, label) in cases {
            let e = sink_error(AppendError::Rpc {
                code,
                message: message.into(),
            });
            assert_eq!(
                e,
                SinkError::Refused {
                    code: label,
                    reason: message.into()
                }
            );
        }
    }

    #[test]
    fn empty_row_errors_display_without_panicking() {
        assert_eq!(SinkError::RowErrors(vec![]).to_string(), "0 row(s) refused");
    }
}
