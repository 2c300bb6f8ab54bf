//! Where the Google Cloud services are: the project, and optional emulator endpoints.
//!
//! With an endpoint set we use anonymous credentials (the emulators accept anything, and the
//! official Rust clients do not read `PUBSUB_EMULATOR_HOST`; `service::gcp` reads it for the binaries); without one, Application Default
//! Credentials, as on a VM or Cloud Run.

use google_cloud_auth::credentials::Credentials;

/// The project and endpoints every client is built from. One value per process, from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpTarget {
    /// The Google Cloud project id that owns the topics, subscriptions and datasets.
    pub project: String,
    /// Pub/Sub endpoint, e.g. `http://127.0.0.1:8085` for the emulator; `None` = Google Cloud.
    pub pubsub_endpoint: Option<String>,
    /// BigQuery REST endpoint, e.g. `http://127.0.0.1:9050` for bqemulator; `None` = Google Cloud.
    pub bigquery_endpoint: Option<String>,
    /// BigQuery Storage API gRPC endpoint as `host:port`, e.g. `127.0.0.1:9060` for bqemulator.
    pub bigquery_grpc_endpoint: Option<String>,
}

impl GcpTarget {
    /// A target on real Google Cloud.
    pub fn cloud(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            pubsub_endpoint: None,
            bigquery_endpoint: None,
            bigquery_grpc_endpoint: None,
        }
    }

    /// Anonymous credentials for an emulator endpoint, `None` to use Application Default
    /// Credentials.
    pub(crate) fn credentials_for(endpoint: Option<&str>) -> Option<Credentials> {
        endpoint.map(|_| google_cloud_auth::credentials::anonymous::Builder::new().build())
    }
}
