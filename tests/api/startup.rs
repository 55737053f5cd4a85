//! The built binary: configuration errors stop start-up naming the variable; secrets never show
//! in logs, `/status` or `/metrics`; JSON logs.

use std::process::Stdio;
use std::time::{Duration, Instant};

use daftra_bridge::sim::{SimConfig, Simulator};

use crate::helpers::{free_port, sqlite_url, Bridge, BridgeEnv};

/// What every run here starts from: a Daftra subdomain and key, and any free port.
fn base_env() -> BridgeEnv {
    BridgeEnv::new()
        .set("DAFTRA_SUBDOMAIN", "acme")
        .set("DAFTRA_API_KEY", "k")
        .set("BIND_ADDR", "127.0.0.1:0")
}

#[test]
fn a_bad_variable_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(&dir.path().join("x.sqlite3"));
    for (name, value, expected) in [
        ("DAFTRA_PAGE_SIZE", "5000", "1 to 1000"),
        ("DAFTRA_CONCURRENCY", "many", "whole number"),
        ("POLL_EMIT_INITIAL", "sometimes", "true/false"),
        ("DATABASE_URL", "mysql://db/x", "postgres://"),
        ("BIND_ADDR", "localhost", "host:port"),
        ("LOG_FORMAT", "xml", "text or json"),
        ("AMQP_URL", "http://broker", "amqp://"),
        (
            "DAFTRA_BASE_URL",
            "https://acme.daftra.com/api2",
            "without /api2",
        ),
    ] {
        let started = Instant::now();
        let env = base_env().set("DATABASE_URL", &db).set(name, value);
        let out = Bridge::new(&["serve"], &env).output();
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name}: stops at once, without retrying anything"
        );
        assert!(!out.status.success(), "{name}={value} must stop start-up");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(value) && stderr.contains(expected),
            "{stderr}"
        );
    }
    let out = Bridge::new(&["serve"], &base_env().remove("DAFTRA_SUBDOMAIN")).output();
    assert!(String::from_utf8_lossy(&out.stderr).contains("DAFTRA_SUBDOMAIN"));
}

#[tokio::test]
async fn secrets_never_appear_in_logs_status_or_metrics() {
    let sim = Simulator::start_local(SimConfig {
        records: 5,
        ..Default::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let closed = free_port();
    let (api_key, amqp_password, token) = ("apikey-Zq81x", "amqppass-Lw02y", "exporttoken-Pp93z");
    let env = base_env()
        .set("DAFTRA_BASE_URL", &sim.base_url)
        .set("DAFTRA_API_KEY", api_key)
        .set("DAFTRA_MAX_RETRIES", "0")
        .set(
            "AMQP_URL",
            format!("amqp://guest:{amqp_password}@127.0.0.1:{closed}/%2f"),
        )
        .set("EXPORT_TOKEN", token)
        .set("DATABASE_URL", sqlite_url(&dir.path().join("x.sqlite3")))
        .set("BIND_ADDR", format!("127.0.0.1:{port}"))
        .set("LOG_FORMAT", "json")
        .set("RUST_LOG", "debug");
    let mut child = Bridge::new(&["serve"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let http = reqwest::Client::new();
    let mut status = String::new();
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/status"))
            .bearer_auth(token)
            .send()
            .await
        {
            status = r.text().await.unwrap();
            if status.contains("last_outcome") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.contains("\"failed\""),
        "the wrong key made the poll fail: {status}"
    );
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.terminate();
    let out = child.wait_with_output();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "JSON logs: {logs}"
    );
    assert!(logs.contains("Poll failed"), "{logs}");
    assert!(
        logs.contains("amqp://guest:***@"),
        "the broker URL is logged redacted"
    );
    for secret in [api_key, amqp_password, token] {
        for (place, text) in [("logs", &*logs), ("status", &status), ("metrics", &metrics)] {
            assert!(!text.contains(secret), "{secret} leaked into {place}");
        }
    }
    sim.stop().await;
}

#[test]
fn a_malformed_dotenv_line_stops_start_up_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# settings\nDAFTRA_TIMEZONE=Africa/Cairo\nDAFTRA_PAGE_SIZE 10 s3cr3t\nLOG_FORMAT=json\n",
    )
    .unwrap();
    let out = Bridge::new(&["serve"], &base_env())
        .current_dir(dir.path())
        .output();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(".env line 3") && stderr.contains("DAFTRA_PAGE_SIZE"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t"), "no value is echoed: {stderr}");
}

#[test]
fn non_utf8_values_never_panic_and_unknown_variables_are_warned() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(&[0x61, 0xff, 0x62]);
    // A variable of the bridge's: an error naming it, exit 1 (not a panic's 101).
    let out = Bridge::new(&["serve"], &base_env().set("DAFTRA_TIMEZONE", not_utf8)).output();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DAFTRA_TIMEZONE") && stderr.contains("UTF-8"),
        "{stderr}"
    );

    // Someone else's variable is ignored; a typo of ours is warned with the closest name.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let env = base_env()
        .set("SOME_TOOL_SETTING", not_utf8)
        .set("DAFTRA_PAGESIZE", "10")
        .set("DATABASE_URL", sqlite_url(&dir.path().join("x.sqlite3")))
        .set("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
    let mut child = Bridge::new(&["serve"], &env)
        .stderr(std::fs::File::create(&log).unwrap().into())
        .spawn();
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("did you mean") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let running = child.is_running();
    child.terminate();
    let _ = child.wait_with_output();
    assert!(running, "start-up went on: {text}");
    assert!(
        text.contains("DAFTRA_PAGESIZE") && text.contains("did you mean DAFTRA_PAGE_SIZE"),
        "{text}"
    );
}
