//! Logging set-up shared by every binary, so that all of them log the same way.
//!
//! - [`Format::Json`] (the default in the cloud): one JSON object per line on stderr, in the
//!   shape Cloud Logging reads from a container's output: `severity` (`DEBUG`, `INFO`,
//!   `WARNING`, `ERROR`), `message`, `time` (RFC 3339), `logging.googleapis.com/sourceLocation`,
//!   `target`, then the event's fields at the top level. tracing-subscriber's own JSON writes
//!   `level` instead of `severity`, which Cloud Logging does not read: every line would land
//!   with the default severity, and alerts on `severity>=ERROR` would never fire.
//! - [`Format::Text`]: human-readable, colours only on a terminal.
//!
//! Stderr, not stdout: stdout belongs to what a command prints (`producer decode`, `tap`).
//! The filter is `RUST_LOG` (default `info`).
//!
//! Use: [`init`]`(format, "producer")` once, first thing in `main`.
//!
//! Why our own formatter and not `tracing-stackdriver` (the one crate for this, checked
//! 2026-12-03 with `cargo info`): its newest release, 0.10.0, still pins `tracing-opentelemetry`
//! 0.23 of early 2024, so it is not kept up; and it camel-cases every field key
//! (`trades_published` becomes `tradesPublished`), which would rename the fields our runbooks,
//! log-based checks and tests read. This formatter is ~150 lines with its own tests.

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime as _;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, in Cloud Logging's shape.
    Json,
    /// Human-readable.
    Text,
}

/// Installs the global subscriber (stderr, `RUST_LOG` or `info`) and logs the `starting` line
/// with the build's version. Panics if a subscriber is already installed (a bug).
pub fn init(format: Format, binary: &'static str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        Format::Json => builder.event_format(CloudJson).init(),
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    build_info::log_start(binary);
}

/// Cloud Logging's severity for a tracing level.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        // Cloud Logging has no TRACE.
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// The event formatter of [`Format::Json`]. See the crate documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloudJson;

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut time = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut line = Map::new();
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert("time".into(), time.into());
        line.insert("target".into(), meta.target().into());
        if let (Some(file), Some(l)) = (meta.file(), meta.line()) {
            line.insert(
                "logging.googleapis.com/sourceLocation".into(),
                serde_json::json!({ "file": file, "line": l.to_string() }),
            );
        }
        // The spans the event happened in, innermost last, by name.
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope.from_root().map(|s| Value::from(s.name())).collect();
            line.insert("spans".into(), spans.into());
        }
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        line.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or_else(|| "".into()),
        );
        for (k, v) in fields.0 {
            // An event field never hides one of the fields Cloud Logging reads.
            let key = if line.contains_key(&k) {
                format!("field.{k}")
            } else {
                k
            };
            line.insert(key, v);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, like `{:#}` of anyhow: the cause is what an operator needs.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.0.insert(field.name().into(), text.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines `f` logs through [`CloudJson`].
    fn lines(f: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(CloudJson)
            .with_max_level(Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn events_carry_the_fields_cloud_logging_reads() {
        let got = lines(|| {
            tracing::warn!(symbol = "BTCUSDT", ids = 42u64, ok = false, "a gap");
        });
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(e["severity"], "WARNING");
        assert_eq!(e["message"], "a gap");
        assert_eq!(e["symbol"], "BTCUSDT");
        assert_eq!(e["ids"], 42);
        assert_eq!(e["ok"], false);
        assert_eq!(e["target"], module_path!());
        let time = e["time"].as_str().unwrap();
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "{time}"
        );
        let loc = &e["logging.googleapis.com/sourceLocation"];
        assert_eq!(loc["file"], file!());
        assert!(
            loc["line"].as_str().unwrap().parse::<u32>().is_ok(),
            "{loc}"
        );
        assert!(
            e.get("level").is_none(),
            "Cloud Logging reads severity, not level"
        );
    }

    #[test]
    fn the_start_line_names_the_binary_and_its_build() {
        let got = lines(|| build_info::log_start("producer"));
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(
            (&e["severity"], &e["message"]),
            (&"INFO".into(), &"starting".into())
        );
        assert_eq!(e["binary"], "producer");
        for (key, value) in build_info::fields() {
            assert_eq!(e[key], value, "{key} in {e}");
        }
    }

    #[test]
    fn every_level_maps_to_a_cloud_logging_severity() {
        let got = lines(|| {
            tracing::error!("e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let severities: Vec<&str> = got
            .iter()
            .map(|e| e["severity"].as_str().unwrap())
            .collect();
        assert_eq!(severities, ["ERROR", "WARNING", "INFO", "DEBUG", "DEBUG"]);
    }

    #[test]
    fn errors_keep_their_causes_and_fields_never_hide_the_reserved_ones() {
        let inner = std::io::Error::other("connection reset");
        let outer = Wrapped(inner);
        let got = lines(|| {
            let span = tracing::info_span!("hub");
            let _g = span.enter();
            tracing::error!(error = &outer as &(dyn std::error::Error + 'static), severity = "spoofed", debug = ?(1, 2), "publish failed");
        });
        let e = &got[0];
        assert_eq!(e["severity"], "ERROR");
        assert_eq!(e["field.severity"], "spoofed");
        assert_eq!(e["error"], "append failed: connection reset");
        assert_eq!(e["debug"], "(1, 2)");
        assert_eq!(e["spans"], serde_json::json!(["hub"]));
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("append failed")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
