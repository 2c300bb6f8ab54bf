//! Google Cloud plumbing shared by the producer, the consumer, the batch and the tests.
//!
//! - [`target`]: which project and endpoints to talk to (real Google Cloud, or the local
//!   emulators with anonymous credentials: the official clients ignore `PUBSUB_EMULATOR_HOST`).
//! - [`pubsub`]: publisher/subscriber construction and idempotent topic/subscription set-up.
//! - [`bigquery::schema`]: BigQuery JSON table schemas (the files in `terraform/schemas/`, shared
//!   with Terraform) and the DDL made from them. Pure.
//! - [`bigquery::write`]: Storage Write API appends of proto rows. `Ok` means delivered (durable);
//!   one function classifies every failure as retry or reject (`Disposition`).
//! - [`bigquery::sql`]: DDL, DML and queries through the official REST client.

pub mod bigquery;
pub mod pubsub;
pub mod target;

pub use target::GcpTarget;
