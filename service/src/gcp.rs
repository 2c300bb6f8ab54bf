//! The Google Cloud flags the binaries share, and the [`GcpTarget`] they make.
//!
//! Endpoints are for the emulators only; unset means Google Cloud with Application Default
//! Credentials. Beside our `--pubsub-endpoint` / `PUBSUB_ENDPOINT`, the Pub/Sub endpoint is also
//! taken from `PUBSUB_EMULATOR_HOST` (`host:port`), the variable `gcloud beta emulators pubsub
//! env-init` prints and Google's client libraries read (the official Rust client does not, so we
//! do). The explicit flag wins over the variable.

use clap::Args;
use gcp::GcpTarget;

/// The variable Google's tooling sets for the Pub/Sub emulator (`host:port`, no scheme).
pub const PUBSUB_EMULATOR_HOST: &str = "PUBSUB_EMULATOR_HOST";

/// `--pubsub-endpoint` / `PUBSUB_ENDPOINT`, falling back to `PUBSUB_EMULATOR_HOST`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct PubSubFlags {
    /// Pub/Sub emulator endpoint, e.g. http://127.0.0.1:8085 (anonymous credentials). Unset: the
    /// PUBSUB_EMULATOR_HOST variable if set (host:port, as `gcloud beta emulators pubsub env-init`
    /// prints it), else Google Cloud with Application Default Credentials.
    #[arg(long = "pubsub-endpoint", env = "PUBSUB_ENDPOINT")]
    pub pubsub_endpoint: Option<String>,
}

impl PubSubFlags {
    /// The endpoint to use, the environment's `PUBSUB_EMULATOR_HOST` considered.
    pub fn endpoint(&self) -> Option<String> {
        resolve_pubsub(
            self.pubsub_endpoint.as_deref(),
            std::env::var(PUBSUB_EMULATOR_HOST).ok().as_deref(),
        )
    }
}

/// `--bigquery-endpoint` and `--bigquery-grpc-endpoint`, set together for bqemulator.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct BigQueryFlags {
    /// BigQuery emulator REST endpoint, e.g. http://127.0.0.1:9050 (set together with
    /// --bigquery-grpc-endpoint). Unset: Google Cloud.
    #[arg(long = "bigquery-endpoint", env = "BIGQUERY_ENDPOINT")]
    pub bigquery_endpoint: Option<String>,
    /// BigQuery emulator Storage API endpoint as host:port, e.g. 127.0.0.1:9060.
    #[arg(long = "bigquery-grpc-endpoint", env = "BIGQUERY_GRPC_ENDPOINT")]
    pub bigquery_grpc_endpoint: Option<String>,
}

impl BigQueryFlags {
    /// Refuses one emulator endpoint without the other: half an emulator setup would send the
    /// other half of the traffic to Google Cloud.
    pub fn check(&self) -> Result<(), String> {
        match (&self.bigquery_endpoint, &self.bigquery_grpc_endpoint) {
            (Some(_), None) => Err(
                "--bigquery-endpoint is set but --bigquery-grpc-endpoint is not: set both for the emulator, neither for Google Cloud".into(),
            ),
            (None, Some(_)) => Err(
                "--bigquery-grpc-endpoint is set but --bigquery-endpoint is not: set both for the emulator, neither for Google Cloud".into(),
            ),
            _ => Ok(()),
        }
    }
}

/// The target for `project`, with whichever of the two services a binary talks to.
pub fn target(
    project: impl Into<String>,
    pubsub: Option<&PubSubFlags>,
    bigquery: Option<&BigQueryFlags>,
) -> GcpTarget {
    let mut t = GcpTarget::cloud(project);
    t.pubsub_endpoint = pubsub.and_then(PubSubFlags::endpoint);
    if let Some(bq) = bigquery {
        t.bigquery_endpoint.clone_from(&bq.bigquery_endpoint);
        t.bigquery_grpc_endpoint
            .clone_from(&bq.bigquery_grpc_endpoint);
    }
    t
}

/// The flag wins; else `PUBSUB_EMULATOR_HOST`, given a scheme when it has none (the emulator
/// speaks plain HTTP/2). Empty values count as unset, as Google's libraries treat them.
pub fn resolve_pubsub(flag: Option<&str>, emulator_host: Option<&str>) -> Option<String> {
    if let Some(f) = flag.map(str::trim).filter(|f| !f.is_empty()) {
        return Some(f.to_owned());
    }
    let host = emulator_host.map(str::trim).filter(|h| !h.is_empty())?;
    Some(if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pubsub: PubSubFlags,
        #[command(flatten)]
        bigquery: BigQueryFlags,
    }

    #[test]
    fn the_flag_wins_over_the_emulator_variable() {
        assert_eq!(
            resolve_pubsub(Some("http://127.0.0.1:1"), Some("localhost:8085")).as_deref(),
            Some("http://127.0.0.1:1")
        );
    }

    #[test]
    fn the_emulator_variable_gets_a_scheme() {
        assert_eq!(
            resolve_pubsub(None, Some("localhost:8085")).as_deref(),
            Some("http://localhost:8085")
        );
        assert_eq!(
            resolve_pubsub(Some(""), Some("http://[::1]:8085")).as_deref(),
            Some("http://[::1]:8085")
        );
    }

    #[test]
    fn nothing_set_means_google_cloud() {
        assert_eq!(resolve_pubsub(None, None), None);
        assert_eq!(resolve_pubsub(None, Some(" ")), None);
        // Without Pub/Sub flags the environment is not consulted at all.
        assert_eq!(target("p", None, None), GcpTarget::cloud("p"));
    }

    #[test]
    fn flags_parse_into_a_target() {
        let cli = Cli::parse_from([
            "x",
            "--pubsub-endpoint",
            "http://127.0.0.1:8085",
            "--bigquery-endpoint",
            "http://127.0.0.1:9050",
            "--bigquery-grpc-endpoint",
            "127.0.0.1:9060",
        ]);
        assert_eq!(cli.bigquery.check(), Ok(()));
        let t = target("proj", Some(&cli.pubsub), Some(&cli.bigquery));
        assert_eq!(t.project, "proj");
        assert_eq!(t.pubsub_endpoint.as_deref(), Some("http://127.0.0.1:8085"));
        assert_eq!(
            t.bigquery_endpoint.as_deref(),
            Some("http://127.0.0.1:9050")
        );
        assert_eq!(t.bigquery_grpc_endpoint.as_deref(), Some("127.0.0.1:9060"));
    }

    #[test]
    fn half_a_bigquery_emulator_is_refused() {
        let half = BigQueryFlags {
            bigquery_endpoint: Some("http://127.0.0.1:9050".into()),
            bigquery_grpc_endpoint: None,
        };
        assert!(
            half.check()
                .unwrap_err()
                .contains("--bigquery-grpc-endpoint")
        );
    }
}
