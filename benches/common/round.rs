//! The `catalogue`, `memory` and `incremental` phases of the e2e bench: `daftra-bridge serve`
//! in a child process against the simulator; rounds of full scans against the network limit
//! and of incremental polls, their peak RSS, CPU time and Daftra requests.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What one round of every resource cost.
pub struct Round {
    /// Wall time from the first poll's start to the last poll's end, in seconds.
    pub wall_secs: f64,
    /// User + system CPU of the bridge process through the round, in seconds.
    pub cpu_secs: f64,
    /// Every resource finished with a successful outcome.
    pub all_succeeded: bool,
}

/// Figures of the rounds, plus the bridge's peak RSS (VmHWM, bytes) through them.
pub struct Rounds {
    pub first: Round,
    /// Full scans again, no change (`POST /poll/{name}?full=true`).
    pub second: Round,
    /// Incremental polls after the caller's changes (`POST /poll/{name}`) of the resources
    /// with a strategy.
    pub third: Round,
    /// Per resource polled in the third round: (name, strategy, mode of its poll, requests).
    pub incremental: Vec<(String, String, String, u64)>,
    pub peak_rss: f64,
    pub resources: usize,
    pub pages: usize,
}

/// CPU seconds (utime + stime) of process `pid`, from /proc/PID/stat.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of stat; here indices 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Waits until every resource of /status has a `last_poll_ended` other than in `before`,
/// then returns the status.
async fn wait_round(port: u16, before: &Value, resources: usize) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + Duration::from_secs(900);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(&url).send().await {
            let body: Value = resp.json().await.unwrap_or_default();
            let done = body["resources"].as_object().map_or(0, |m| {
                m.iter()
                    .filter(|(k, v)| {
                        let was = &before["resources"][k.as_str()];
                        // End times have one-second resolution: a poll's duration tells two
                        // polls that ended in the same second apart.
                        v["last_poll_ended"].is_string()
                            && !v["polling"].as_bool().unwrap_or(true)
                            && (v["last_poll_ended"] != was["last_poll_ended"]
                                || v["last_duration_seconds"] != was["last_duration_seconds"])
                    })
                    .count()
            });
            if done == resources {
                return Ok(body);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the round did not finish within 900 s")
}

fn outcome(status: &Value, started: Instant, cpu: f64) -> Round {
    Round {
        wall_secs: started.elapsed().as_secs_f64(),
        cpu_secs: cpu,
        all_succeeded: status["resources"]
            .as_object()
            .is_some_and(|m| m.values().all(|v| v["last_outcome"] != "failed")),
    }
}

/// `daftra-bridge serve` against the simulator at `base_url`, polling `resources` once an hour
/// (the caller triggers further polls), with no broker and no output.
fn spawn_serve(
    bin: &str,
    base_url: &str,
    concurrency: usize,
    resources: &str,
    (db, port): (&std::path::Path, u16),
    extra: &[(&str, String)],
) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(bin)
        .arg("serve")
        .env_clear()
        .envs([
            ("DAFTRA_BASE_URL", base_url.to_string()),
            ("DAFTRA_API_KEY", "sim-api-key".into()),
            ("DAFTRA_PAGE_SIZE", "1000".into()),
            ("DAFTRA_CONCURRENCY", concurrency.to_string()),
            ("DAFTRA_RESOURCES", resources.to_string()),
            ("DATABASE_URL", format!("sqlite://{}", db.display())),
            ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f".into()),
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("POLL_INTERVAL_SECS", "3600".into()),
            ("POLL_DEADLINE_SECS", "3600".into()),
        ])
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
}

/// Runs `daftra-bridge serve` with `DAFTRA_RESOURCES=all` against the simulator at `base_url`
/// (which serves every resource), measures the first round (baseline), a second one (full
/// scans, `POST /poll/{name}?full=true`) and, after `change`, a third (incremental polls,
/// `POST /poll/{name}`), then stops it.
pub async fn measure(
    bin: &str,
    dir: &std::path::Path,
    base_url: &str,
    concurrency: usize,
    records: usize,
    change: impl FnOnce(),
) -> anyhow::Result<Rounds> {
    let names: Vec<String> = daftra_bridge::catalogue::all()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = dir.join("catalogue.sqlite3");
    let mut child = spawn_serve(bin, base_url, concurrency, "all", (&db, port), &[])?;
    let pid = child.id().unwrap_or_default();
    let started = Instant::now();
    let cpu0 = cpu_secs(pid);
    let first_status = wait_round(port, &Value::Null, names.len()).await?;
    let cpu1 = cpu_secs(pid);
    let first = outcome(&first_status, started, cpu1 - cpu0);
    let http = reqwest::Client::new();
    let started = Instant::now();
    for n in &names {
        http.post(format!("http://127.0.0.1:{port}/poll/{n}?full=true"))
            .send()
            .await?;
    }
    let second_status = wait_round(port, &first_status, names.len()).await?;
    let cpu2 = cpu_secs(pid);
    let second = outcome(&second_status, started, cpu2 - cpu1);
    change();
    // The resources with a strategy: the others scan in full whatever the round.
    let proven: Vec<&String> = names
        .iter()
        .filter(|n| second_status["resources"][n.as_str()]["strategy"] != "full")
        .collect();
    let started = Instant::now();
    for n in &proven {
        http.post(format!("http://127.0.0.1:{port}/poll/{n}"))
            .send()
            .await?;
    }
    let third_status = wait_round(port, &second_status, proven.len()).await?;
    let third = outcome(&third_status, started, cpu_secs(pid) - cpu2);
    let incremental = proven
        .iter()
        .map(|n| {
            let s = &third_status["resources"][n.as_str()];
            let text = |k: &str| s[k].as_str().unwrap_or("?").to_string();
            let requests = s["requests"].as_u64().unwrap_or(0);
            (n.to_string(), text("strategy"), text("last_mode"), requests)
        })
        .collect();
    let peak_rss = status_bytes(pid, "VmHWM");
    child.kill().await?;
    Ok(Rounds {
        first,
        second,
        third,
        incremental,
        peak_rss,
        resources: names.len(),
        pages: names.len() * records.div_ceil(1000),
    })
}

/// One row of the memory table: a resource of `records`, polled twice by `serve`.
pub struct MemoryRow {
    /// First poll (baseline) time in seconds, from /status, and the process's peak RSS (bytes).
    pub first_secs: f64,
    pub first_peak: f64,
    /// Second poll (1% changed) time and the peak RSS during it (peak reset before it).
    pub second_secs: f64,
    pub second_peak: f64,
    /// RSS two seconds after the second poll.
    pub rss_after: f64,
}

fn status_bytes(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .unwrap_or(f64::NAN)
}

/// Polls the work orders of the simulator at `base_url` with `serve` twice: a first poll, then,
/// after `change` edits 1% of the records, a second one; peak RSS of each and RSS after.
pub async fn memory_row(
    bin: &str,
    dir: &std::path::Path,
    base_url: &str,
    concurrency: usize,
    records: usize,
    change: impl FnOnce(),
) -> anyhow::Result<MemoryRow> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = dir.join(format!("memory-{records}.sqlite3"));
    // The second poll is a full scan, as the table measures it.
    let full = [("POLL_STRATEGY", "full".to_string())];
    let mut child = spawn_serve(
        bin,
        base_url,
        concurrency,
        "work_orders",
        (&db, port),
        &full,
    )?;
    let pid = child.id().unwrap_or_default();
    let first = wait_round(port, &Value::Null, 1).await?;
    let first_peak = status_bytes(pid, "VmHWM");
    change();
    // Linux >= 4.0: writing 5 resets the peak RSS of the process to its current RSS.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/poll/work_orders"))
        .send()
        .await?;
    let second = wait_round(port, &first, 1).await?;
    let second_peak = status_bytes(pid, "VmHWM");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = status_bytes(pid, "VmRSS");
    child.kill().await?;
    let secs = |s: &Value| {
        s["resources"]["work_orders"]["last_duration_seconds"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    Ok(MemoryRow {
        first_secs: secs(&first),
        first_peak,
        second_secs: secs(&second),
        second_peak,
        rss_after,
    })
}

/// One incremental poll of a large resource by `serve`, publishing to RabbitMQ.
pub struct IncrementalRun {
    /// Records of the resource, and the full scan before (seconds).
    pub first_secs: f64,
    /// The incremental poll: its mode and strategy as /status reports them, the Daftra
    /// requests it made, its duration (seconds), the CPU of the process through it (seconds,
    /// HTTP trigger and status writes included) and the peak RSS meanwhile (bytes).
    pub mode: String,
    pub strategy: String,
    pub requests: u64,
    pub poll_secs: f64,
    pub cpu_secs: f64,
    pub peak_rss: f64,
    /// Seconds from `POST /poll` to the last of the expected events on the queue.
    pub events_secs: f64,
    pub events: usize,
}

/// `serve` on the work orders of the simulator at `base_url`, publishing to `exchange` at
/// `amqp_url`: a first poll (full scan), then `change` (which makes `expected` changes) and an
/// incremental poll triggered by `POST /poll/work_orders`, measured; the events are counted
/// on a queue bound to the exchange.
pub async fn incremental_poll(
    bin: &str,
    dir: &std::path::Path,
    (base_url, concurrency): (&str, usize),
    (amqp_url, exchange): (&str, &str),
    expected: usize,
    change: impl FnOnce(),
) -> anyhow::Result<IncrementalRun> {
    use futures::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let secret = daftra_bridge::config::Secret::new(amqp_url);
    let conn = daftra_bridge::sinks::amqp::connect(&secret).await?;
    let ch = conn.create_channel().await?;
    daftra_bridge::sinks::amqp::declare_exchange(&ch, exchange).await?;
    let queue = format!("{exchange}.count");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare(&queue, exclusive, FieldTable::default())
        .await?;
    ch.queue_bind(
        &queue,
        exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut consumer = ch
        .basic_consume(
            &queue,
            "bench",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let db = dir.join("incremental.sqlite3");
    let extra = [
        ("AMQP_URL", amqp_url.to_string()),
        ("AMQP_EXCHANGE", exchange.to_string()),
        ("POLL_INTERVAL_SECS", "60".to_string()),
    ];
    let mut child = spawn_serve(
        bin,
        base_url,
        concurrency,
        "work_orders",
        (&db, port),
        &extra,
    )?;
    let pid = child.id().unwrap_or_default();
    let first = wait_round(port, &Value::Null, 1).await?;
    change();
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;
    let cpu0 = cpu_secs(pid);
    let started = Instant::now();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/poll/work_orders"))
        .send()
        .await?;
    let second = wait_round(port, &first, 1).await?;
    let (cpu, peak_rss) = (cpu_secs(pid) - cpu0, status_bytes(pid, "VmHWM"));
    let mut events = 0;
    let deadline = started + Duration::from_secs(120);
    while events < expected && Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await;
        if let Ok(Some(Ok(d))) = next {
            d.ack(BasicAckOptions::default()).await?;
            events += 1;
        }
    }
    let events_secs = started.elapsed().as_secs_f64();
    child.kill().await?;
    let _ = conn.close(200, "bench done").await;
    let s = &second["resources"]["work_orders"];
    let text = |k: &str| s[k].as_str().unwrap_or("?").to_string();
    Ok(IncrementalRun {
        first_secs: first["resources"]["work_orders"]["last_duration_seconds"]
            .as_f64()
            .unwrap_or(f64::NAN),
        mode: text("last_mode"),
        strategy: text("strategy"),
        requests: s["requests"].as_u64().unwrap_or(0),
        poll_secs: s["last_duration_seconds"].as_f64().unwrap_or(f64::NAN),
        cpu_secs: cpu,
        peak_rss,
        events_secs,
        events,
    })
}
