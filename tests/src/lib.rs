//! Test support: the local stand-ins for Google Cloud, started on free ports for tests.
//!
//! - [`PubsubEmulator`]: Google's official Pub/Sub emulator (`gcloud beta emulators pubsub
//!   start`, Java, ready in ~10 s).
//! - [`BigQueryEmulator`]: `bqemulator` from PyPI, in the project venv made by
//!   `scripts/setup-bqemulator`, started through `scripts/bqemulator-launcher.py`.
//!
//! Each emulator runs in its own process group and is killed (the whole group: gcloud starts
//! Java as a child) when its handle drops, which also happens when a test panics. [`shared`]
//! gives one pair per test process, killed at process exit; when `scripts/test` has already
//! started a pair it exports their endpoints (`PIPELINE_*` variables) and every test reuses them.
//! Tests isolate themselves by unique topic, subscription and dataset names ([`unique_name`]).
//!
//! This module is synchronous on purpose: it works from any test, with or without a runtime.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod procs;

/// Project id used for every emulator.
pub const PROJECT: &str = "local-project";

/// Environment variables through which a running pair of emulators is shared with tests.
pub mod env {
    /// `http://127.0.0.1:PORT` of a running Pub/Sub emulator.
    pub const PUBSUB: &str = "PIPELINE_PUBSUB_ENDPOINT";
    /// `http://127.0.0.1:PORT` of a running bqemulator (REST).
    pub const BQ_REST: &str = "PIPELINE_BQ_REST_ENDPOINT";
    /// `127.0.0.1:PORT` of the same bqemulator (gRPC Storage API).
    pub const BQ_GRPC: &str = "PIPELINE_BQ_GRPC_ENDPOINT";
}

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A process group we own; killed on drop.
#[derive(Debug)]
struct ProcessGroup {
    child: Child,
}

impl ProcessGroup {
    fn spawn(mut cmd: Command, what: &'static str, log: &Path) -> Self {
        let log_file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err_file = log_file.try_clone().expect("clone log handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file))
            // A new process group, so that a kill reaches the JVM gcloud starts as a child.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {what}: {e}"));
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created; no memory
        // is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; SIGKILL for whatever ignored SIGTERM (the JVM may linger).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; a tiny race with other processes remains).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A name no other test (or earlier run against the same emulator) uses: `prefix_pid_n_time`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{t}", std::process::id())
}

/// Polls `GET path` on `addr` until it answers 200, or panics with the log after `timeout`.
fn wait_http_ok(addr: SocketAddr, path: &str, timeout: Duration, what: &str, log: &Path) {
    let deadline = Instant::now() + timeout;
    loop {
        if http_status(addr, path) == Some(200) {
            return;
        }
        if Instant::now() > deadline {
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = log_text
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!("the {what} did not answer on {addr}{path} within {timeout:?}; log:\n{tail}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The HTTP status of `GET path`, or `None` if nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn log_dir() -> PathBuf {
    let dir = repo_root().join("target").join("emulator-logs");
    std::fs::create_dir_all(&dir).expect("create target/emulator-logs");
    dir
}

/// A running Pub/Sub emulator.
#[derive(Debug)]
pub struct PubsubEmulator {
    /// `http://127.0.0.1:PORT`, for the clients' `with_endpoint`.
    pub endpoint: String,
    process: Option<ProcessGroup>,
}

impl PubsubEmulator {
    /// Starts Google's emulator on a free port and waits until it answers (~10 s).
    pub fn start() -> Self {
        let port = free_port();
        let log = log_dir().join(format!("pubsub-{port}.log"));
        let mut cmd = Command::new("gcloud");
        cmd.args([
            "beta",
            "emulators",
            "pubsub",
            "start",
            &format!("--host-port=127.0.0.1:{port}"),
            &format!("--project={PROJECT}"),
        ]);
        let process = ProcessGroup::spawn(cmd, "Pub/Sub emulator", &log);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_http_ok(
            addr,
            &format!("/v1/projects/{PROJECT}/topics"),
            Duration::from_secs(60),
            "Pub/Sub emulator",
            &log,
        );
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            process: Some(process),
        }
    }

    /// The PID of the process group leader, if this handle started it.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ProcessGroup::pid)
    }
}

/// A running bqemulator.
#[derive(Debug)]
pub struct BigQueryEmulator {
    /// REST endpoint, `http://127.0.0.1:PORT`.
    pub rest_endpoint: String,
    /// Storage API gRPC endpoint, `127.0.0.1:PORT`.
    pub grpc_endpoint: String,
    process: Option<ProcessGroup>,
    ports: (u16, u16),
    data_dir: Option<PathBuf>,
}

impl BigQueryEmulator {
    /// Starts bqemulator (in memory) on free ports and waits until it answers.
    pub fn start() -> Self {
        Self::start_on(free_port(), free_port(), None)
    }

    /// Starts bqemulator with its data in `data_dir`, so that a stopped emulator can be started
    /// again with the same tables (for fault tests).
    pub fn start_persistent(data_dir: &Path) -> Self {
        Self::start_on(free_port(), free_port(), Some(data_dir.to_path_buf()))
    }

    fn start_on(rest: u16, grpc: u16, data_dir: Option<PathBuf>) -> Self {
        let root = repo_root();
        let python = root.join(".venv/bq/bin/python");
        assert!(
            python.exists(),
            "bqemulator is not installed: run scripts/setup-bqemulator (expected {})",
            python.display()
        );
        let log = log_dir().join(format!("bqemulator-{rest}.log"));
        let mut cmd = Command::new(python);
        cmd.arg(root.join("scripts/bqemulator-launcher.py"))
            .args(["start", "--rest-port", &rest.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--project", PROJECT, "--log-level", "warning"]);
        if let Some(dir) = &data_dir {
            cmd.arg("--data-dir").arg(dir);
        }
        let process = ProcessGroup::spawn(cmd, "BigQuery emulator", &log);
        let addr: SocketAddr = ([127, 0, 0, 1], rest).into();
        wait_http_ok(
            addr,
            &format!("/bigquery/v2/projects/{PROJECT}/datasets"),
            Duration::from_secs(60),
            "BigQuery emulator",
            &log,
        );
        Self {
            rest_endpoint: format!("http://127.0.0.1:{rest}"),
            grpc_endpoint: format!("127.0.0.1:{grpc}"),
            process: Some(process),
            ports: (rest, grpc),
            data_dir,
        }
    }

    /// Stops the emulator (a BigQuery outage, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Starts it again on the same ports (and data directory, if persistent).
    pub fn restart(&mut self) {
        self.stop();
        let again = Self::start_on(self.ports.0, self.ports.1, self.data_dir.clone());
        *self = again;
    }

    /// The PID of the process group leader, if this handle started it.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ProcessGroup::pid)
    }
}

/// The endpoints of a Pub/Sub emulator and a bqemulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Pub/Sub, `http://127.0.0.1:PORT`.
    pub pubsub: String,
    /// BigQuery REST, `http://127.0.0.1:PORT`.
    pub bq_rest: String,
    /// BigQuery gRPC, `127.0.0.1:PORT`.
    pub bq_grpc: String,
}

/// The emulators of this test process: reused from `PIPELINE_*` variables when `scripts/test`
/// started them, otherwise started once here (both at the same time) and killed at exit.
pub fn shared() -> &'static Endpoints {
    static SHARED: OnceLock<Endpoints> = OnceLock::new();
    SHARED.get_or_init(|| {
        if let (Ok(pubsub), Ok(bq_rest), Ok(bq_grpc)) = (
            std::env::var(env::PUBSUB),
            std::env::var(env::BQ_REST),
            std::env::var(env::BQ_GRPC),
        ) {
            return Endpoints {
                pubsub,
                bq_rest,
                bq_grpc,
            };
        }
        let bq = std::thread::spawn(BigQueryEmulator::start);
        let pubsub = PubsubEmulator::start();
        let bq = bq.join().expect("bqemulator start-up panicked");
        let endpoints = Endpoints {
            pubsub: pubsub.endpoint.clone(),
            bq_rest: bq.rest_endpoint.clone(),
            bq_grpc: bq.grpc_endpoint.clone(),
        };
        keep_until_exit(pubsub, bq);
        endpoints
    })
}

static OWNED: OnceLock<std::sync::Mutex<Vec<ProcessGroup>>> = OnceLock::new();

fn keep_until_exit(mut pubsub: PubsubEmulator, mut bq: BigQueryEmulator) {
    let owned = OWNED.get_or_init(|| {
        extern "C" fn kill_owned() {
            if let Some(owned) = OWNED.get()
                && let Ok(mut groups) = owned.lock()
            {
                groups.clear(); // drops, and so kills, every group
            }
        }
        // SAFETY: registers a plain extern "C" function; the test harness leaves through
        // `exit`, which runs it, so the emulators do not outlive the test process.
        unsafe {
            libc::atexit(kill_owned);
        }
        std::sync::Mutex::new(Vec::new())
    });
    let mut groups = owned.lock().expect("emulator registry");
    groups.extend(pubsub.process.take());
    groups.extend(bq.process.take());
}

/// Per symbol, the first trade id a producer accounts for, from its `/metrics` text
/// (`producer_start_id{symbol="BTCUSDT"} 123`).
pub fn producer_start_ids(metrics: &str) -> std::collections::BTreeMap<String, i64> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("producer_start_id{symbol=\""))
        .filter_map(|rest| {
            let (symbol, value) = rest.split_once("\"} ")?;
            Some((symbol.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A decimal string without trailing fractional zeros ("91234.50000000" -> "91234.5",
/// "1.000" -> "1"), so that Binance's fixed 8 decimals compare with BigQuery's NUMERIC text.
pub fn normalise_decimal(decimal: &str) -> String {
    if decimal.contains('.') {
        decimal
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        decimal.to_owned()
    }
}
