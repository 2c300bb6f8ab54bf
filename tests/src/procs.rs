//! The workspace's binaries as child processes, for cross-process tests (chaos, long faults):
//! each in its own process group with its log in `target/chaos-logs/`, killed when dropped.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, unique_name};

/// Where cargo put the workspace's binaries (this test is target/debug/deps/chaos-*).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn log_dir() -> PathBuf {
    let dir = bin_dir().parent().unwrap().join("chaos-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process in its own process group, killed when dropped.
pub struct Proc {
    /// The binary's name.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, args: &[String]) -> Self {
        let bin = bin_dir().join(name);
        assert!(
            bin.exists(),
            "{} is not built: run `cargo build --workspace` first",
            bin.display()
        );
        let log = log_dir().join(format!("{}-{}.log", unique_name(name), free_port()));
        let out = File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(args)
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a pid we own; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// SIGTERM, then the exit status (SIGKILL after `grace`).
    pub fn stop(&mut self, grace: Duration) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > grace {
                self.signal(libc::SIGKILL);
                let status = self.child.wait().unwrap();
                panic!(
                    "{} ignored SIGTERM for {grace:?} ({status}); log: {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the log's tail if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited {status}:\n{}", self.name, self.tail());
        }
    }

    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// The simulator, started as a process; its address read from the line it prints on stdout.
pub fn start_sim(extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "--port".to_owned(),
        "0".to_owned(),
        "--log-format=text".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proc = Proc::spawn("binance-sim", &args);
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&proc.log).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.strip_prefix("binance-sim listening on "))
        {
            return (proc, addr.trim().to_owned());
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "binance-sim did not start: {}",
            proc.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
