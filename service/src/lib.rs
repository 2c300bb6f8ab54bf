//! What every binary of the pipeline does the same way, written once:
//!
//! - [`backoff`]: retry delays (capped exponential, jittered), on `backon`'s schedule.
//! - [`shutdown`]: SIGTERM or Ctrl-C cancels a [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`http`]: the `/healthz` + `/metrics` server (bind, serve until shutdown, the OpenMetrics
//!   answer, the 200/503 health answer).
//! - [`build_info`]: the `<binary>_build_info{version, git_revision} 1` gauge.
//! - [`clock`]: wall-clock microseconds since the epoch.
//! - [`duration`]: the duration syntax of every flag (`250ms`, `90s`, `23h30m`).
//! - [`symbols`]: the symbols the pipeline captures unless told otherwise.
//! - `gcp` (feature `gcp`): the Pub/Sub and BigQuery endpoint flags and their
//!   [`GcpTarget`](::gcp::GcpTarget), honouring `PUBSUB_EMULATOR_HOST`.

pub mod backoff;
pub mod build_info;
pub mod clock;
pub mod duration;
#[cfg(feature = "gcp")]
pub mod gcp;
pub mod http;
pub mod shutdown;
pub mod symbols;
