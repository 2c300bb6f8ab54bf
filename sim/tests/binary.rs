//! The binary prints its address on stdout, serves, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn binary_prints_the_listening_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_binance-sim"))
        .args(["--port", "0", "--history-days", "1", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn binance-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("binance-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("http://{addr}/api/v3/exchangeInfo?symbol=BTCUSDT"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["symbols"][0]["symbol"], "BTCUSDT");
    // SIGTERM through the `kill` command, then a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "clean shutdown: {exit:?}");
}

#[test]
fn help_explains_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_binance-sim"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--rates",
        "--rate-multiplier",
        "--malformed-ratio",
        "SIM_PORT",
        "--seed",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
}
