//! [`ArchiveClient`]: downloads files of Binance's public trade archive (`data.binance.vision`).
//!
//! The archive is static files behind a CDN in front of S3, not the REST API: no weight, no
//! 429/418 discipline, no `X-MBX-*` headers. What a download can meet, and what the client does
//! (one function, [`classify_status`], with a reason per status):
//! - `200`: the body is the file. A body cut short in transit (the connection closes before
//!   `Content-Length` bytes) is a transport error, retried; a body the CDN serves whole but
//!   wrong is for the caller's checksum to catch.
//! - `404` (`NoSuchKey`): the file does not exist (not yet uploaded, or a known hole of the
//!   archive): [`Download::Missing`], never retried here; the caller ledgers it and a later run
//!   asks again (late uploads happen).
//! - `5xx`, `408`, `429` (S3 "SlowDown" is a 503; the CDN may answer 429): retried with capped,
//!   jittered exponential backoff, at most [`ArchiveConfig::max_retries`] times.
//! - any other status (`403` a path outside the bucket, `400`): [`ArchiveError::Permanent`].
//!
//! Paths and file names are the caller's (`batch::archive::path`); this module only moves bytes.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;

use crate::rest::classify::body_excerpt;
use crate::rest::client::describe;

/// The archive's public host.
pub const DEFAULT_ARCHIVE_URL: &str = "https://data.binance.vision";

/// Configuration of an [`ArchiveClient`]. `Default` is production.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Scheme and host, no trailing path: [`DEFAULT_ARCHIVE_URL`] or a simulator's
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Retries after the first attempt, for transient failures.
    pub max_retries: usize,
    /// First backoff delay (before jitter).
    pub min_backoff: Duration,
    /// Cap on one backoff delay (before jitter).
    pub max_backoff: Duration,
    /// Timeout of one download, connect to last byte. A monthly BTCUSDT file is ~1-2 GB, so the
    /// default is generous; daily files are tens of MB.
    pub request_timeout: Duration,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_ARCHIVE_URL.into(),
            max_retries: 5,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(600),
        }
    }
}

/// What a download found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download {
    /// The file's bytes, whole (as many as the server announced).
    Found(Bytes),
    /// HTTP 404: no such file (yet).
    Missing,
}

/// What a status means for a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: the body is the file.
    Ok,
    /// 404: the file does not exist.
    Missing,
    /// Worth retrying: the server or the path to it is struggling.
    Transient,
    /// Will stay wrong: give up at once.
    Permanent,
}

/// Classifies one archive response status.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Ok,
        // S3's NoSuchKey: the file is not there.
        404 => StatusClass::Missing,
        // Request timeout and throttling (S3 SlowDown is 503, a CDN may send 429): back off.
        408 | 429 => StatusClass::Transient,
        // Server side; S3 asks clients to retry 500 and 503.
        500..=599 => StatusClass::Transient,
        // 403 (outside the public prefix), 400, redirects we do not follow, ...
        _ => StatusClass::Permanent,
    }
}

/// Why a download failed, after the client did what it could.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Transient failures on every attempt: the archive or the network is down. Retry the
    /// file later; nothing about the file is known.
    #[error("{path}: failed {attempts} times, last: {detail}")]
    Transient {
        /// The path asked for.
        path: String,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        detail: String,
    },
    /// A status that retrying cannot change (e.g. 403 for a path outside the archive).
    #[error("{path}: HTTP {status}: {detail}")]
    Permanent {
        /// The path asked for.
        path: String,
        /// The status.
        status: u16,
        /// The start of the body.
        detail: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("archive HTTP client: {0}")]
    Client(String),
}

/// Downloads archive files with bounded, jittered retries.
#[derive(Debug, Clone)]
pub struct ArchiveClient {
    config: ArchiveConfig,
    http: reqwest::Client,
}

impl ArchiveClient {
    /// A client for `config`.
    pub fn new(config: ArchiveConfig) -> Result<Self, ArchiveError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ArchiveError::Client(e.to_string()))?;
        Ok(Self { config, http })
    }

    /// The base URL files are fetched from.
    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// Downloads `path` (absolute within the host, e.g.
    /// `/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.zip`).
    pub async fn get(&self, path: &str) -> Result<Download, ArchiveError> {
        let url = format!(
            "{}/{}",
            self.config.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(self.config.max_retries)
            .with_jitter()
            .build();
        let mut attempts = 0usize;
        loop {
            attempts += 1;
            let detail = match self.http.get(&url).send().await {
                Err(e) => describe(&e),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match classify_status(status) {
                        StatusClass::Missing => return Ok(Download::Missing),
                        StatusClass::Ok => match resp.bytes().await {
                            // hyper fails the body when fewer bytes arrive than announced.
                            Ok(body) => return Ok(Download::Found(body)),
                            Err(e) => format!("body cut short: {}", describe(&e)),
                        },
                        class => {
                            let body = resp.bytes().await.unwrap_or_default();
                            let detail = body_excerpt(&body);
                            if class == StatusClass::Permanent {
                                return Err(ArchiveError::Permanent {
                                    path: path.to_owned(),
                                    status,
                                    detail,
                                });
                            }
                            format!("HTTP {status}: {detail}")
                        }
                    }
                }
            };
            let Some(delay) = backoff.next() else {
                return Err(ArchiveError::Transient {
                    path: path.to_owned(),
                    attempts,
                    detail,
                });
            };
            tracing::warn!(path, attempt = attempts, ?delay, %detail, "archive download failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_with_404_apart() {
        assert_eq!(classify_status(200), StatusClass::Ok);
        assert_eq!(classify_status(206), StatusClass::Ok);
        assert_eq!(classify_status(404), StatusClass::Missing);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(s), StatusClass::Transient, "{s}");
        }
        for s in [301, 400, 401, 403, 410, 451] {
            assert_eq!(classify_status(s), StatusClass::Permanent, "{s}");
        }
    }
}
