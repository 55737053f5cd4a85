//! End-to-end figures of the bridge against the in-process simulator and the local RabbitMQ,
//! compared with their targets, printed as one table and written to BENCHMARKS.md.
//!
//! `cargo bench --bench e2e -- --records 100000 --latency-ms 50 --concurrency 4`
//!
//! Needs RabbitMQ on 127.0.0.1:5672 (guest/guest), GNU time at /usr/bin/time (`apt-get install
//! time`) and, for the baseline, Python 3 with pandas, requests and openpyxl.

mod common;
#[path = "common/heap.rs"]
mod heap;
#[path = "common/round.rs"]
mod round;

use std::collections::HashSet;
use std::hint::black_box;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use clap::Parser;
use daftra_bridge::catalogue::default_resource;
use daftra_bridge::config::{DaftraAuth, RawEnv, Secret, Settings};
use daftra_bridge::diff::{diff, Known, Scanned};
use daftra_bridge::feed::Feed;
use daftra_bridge::poller::Poller;
use daftra_bridge::record;
use daftra_bridge::scan::{scan, Keep};
use daftra_bridge::sim::{Faults, SimConfig, Simulator};
use daftra_bridge::sinks::amqp as publisher;
use daftra_bridge::startup::Application;
use daftra_bridge::store::{SnapshotWrite, Store};
use futures::{StreamExt, TryStreamExt};
use heap::{heap_live, heap_peak, reset_heap_peak};
use lapin::options::{ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use serde_json::{Map, Value};

const GNU_TIME: &str = "/usr/bin/time";

#[global_allocator]
static ALLOC: heap::CountingAlloc = heap::CountingAlloc;

const MB: f64 = 1024.0 * 1024.0;

/// Knobs of the run; `cargo bench` adds `--bench`, which is accepted and ignored.
#[derive(Parser, Debug)]
#[command(name = "e2e")]
struct Args {
    /// Work orders in the simulator (first poll, diff, live exports, baseline).
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Latency the simulator adds to every request during the poll, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// DAFTRA_CONCURRENCY: page requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Events published from the outbox.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Records of the snapshot exported with `--source snapshot`.
    #[arg(long, default_value_t = 1_000_000)]
    snapshot_records: usize,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Figures to measure, comma-separated; BENCHMARKS.md is only written when all are.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "poll,events,feed,snapshot,live,baseline,catalogue,memory,incremental"
    )]
    phases: Vec<Phase>,
    /// Print the table only; leave BENCHMARKS.md alone.
    #[arg(long)]
    no_write: bool,
    /// Keep the temporary folder (databases, exports) for profiling, and print its path.
    #[arg(long)]
    keep: bool,
    /// Resource sizes of the `memory` phase.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50000,200000,400000,1000000"
    )]
    memory_records: Vec<usize>,
    /// Records of each resource in the `catalogue` phase (all 31 resources).
    #[arg(long, default_value_t = 10_000)]
    catalogue_records: usize,
    /// Work orders of the `incremental` phase (one incremental poll after 10 changes).
    #[arg(long, default_value_t = 1_000_000)]
    incremental_records: usize,
    /// Another build of `daftra-bridge` (an older commit) whose CSV and XLSX exports of the same
    /// snapshot are timed beside this build's, in the same run.
    #[arg(long)]
    old_bin: Option<std::path::PathBuf>,
    #[arg(long, hide = true)]
    bench: bool,
}

/// Groups of figures, run in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// First poll (time, memory), then a second scan with 1% changed and its diff.
    Poll,
    /// Outbox to RabbitMQ.
    Events,
    /// The pull feed `GET /events` read by one consumer in pages of 500 (after `events`, or
    /// over an outbox filled here).
    Feed,
    /// CSV and XLSX exports of the large snapshot.
    Snapshot,
    /// CSV and XLSX exports read live from the simulator.
    Live,
    /// The Python script, against the same simulator.
    Baseline,
    /// Every declared resource at `--catalogue-records` each: one round of `serve`.
    Catalogue,
    /// Peak and after-poll RSS of `serve` for each of `--memory-records`.
    Memory,
    /// One incremental poll of `--incremental-records` work orders after 10 changes.
    Incremental,
}

const ALL_PHASES: usize = 9;

/// One row of the table.
struct Figure {
    name: String,
    value: String,
    target: String,
    verdict: String,
}

impl Figure {
    fn info(name: impl Into<String>, value: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: value.into(),
            target: "—".into(),
            verdict: "info".into(),
        }
    }

    /// A figure that must stay at or below `limit` (times, memory).
    fn at_most(name: impl Into<String>, value: f64, limit: f64, unit: Unit) -> Figure {
        Figure {
            name: name.into(),
            value: unit.show(value),
            target: format!("≤ {}", unit.show(limit)),
            verdict: verdict(value / limit, value <= limit),
        }
    }

    /// A figure that must reach at least `floor` (rates).
    fn at_least(name: impl Into<String>, value: f64, floor: f64, unit: Unit) -> Figure {
        Figure {
            name: name.into(),
            value: unit.show(value),
            target: format!("≥ {}", unit.show(floor)),
            verdict: verdict(value / floor, value >= floor),
        }
    }
}

fn verdict(ratio: f64, ok: bool) -> String {
    format!("{ratio:.2}× {}", if ok { "pass" } else { "**MISS**" })
}

#[derive(Clone, Copy)]
enum Unit {
    Secs,
    Millis,
    Bytes,
    PerSec(&'static str),
    /// A count or a ratio.
    Count,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Secs => format!("{v:.2} s"),
            Unit::Count if v.fract() == 0.0 => format!("{v:.0}"),
            Unit::Count => format!("{v:.1}"),
            Unit::Millis => format!("{v:.1} ms"),
            Unit::Bytes => format!("{:.0} MB", v / MB),
            Unit::PerSec(what) => format!("{} {what}/s", thousands(v)),
        }
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
fn proc_status_bytes(field: &str) -> f64 {
    proc_status_bytes_of(std::process::id(), field)
}

/// A field of /proc/PID/status in bytes.
fn proc_status_bytes_of(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb * 1024.0)
        .unwrap_or(f64::NAN)
}

/// The work-orders entry of a bridge's /status once its first poll has ended.
async fn wait_for_first_poll(port: u16) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(&url).send().await {
            let body: Value = resp.json().await.unwrap_or_default();
            let entry = &body["resources"][default_resource().name.as_str()];
            if entry["last_outcome"].is_string() {
                return Ok(entry.clone());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("the bridge did not finish its first poll within 300 s")
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), so a later VmHWM is the peak since now.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("e2e: cannot reset VmHWM ({e}); the peak includes earlier phases");
    }
}

fn log(msg: &str) {
    eprintln!("e2e: {msg}");
}

/// Everything the figures share: the simulator, the bridge built against it and a temp folder.
struct Bench {
    args: Args,
    sim: Simulator,
    app: Application,
    dir: tempfile::TempDir,
    figures: Vec<Figure>,
}

fn settings(args: &Args, sim: &Simulator, db: &Path) -> Settings {
    let raw = RawEnv {
        daftra_page_size: Some("1000".into()),
        daftra_concurrency: Some(args.concurrency.to_string()),
        daftra_timeout_secs: Some("120".into()),
        poll_deadline_secs: Some("3600".into()),
        database_url: Some(format!("sqlite://{}", db.display())),
        amqp_url: Some(args.amqp_url.clone()),
        amqp_exchange: Some(format!(
            "bench.e2e.{}.{:x}",
            std::process::id(),
            rand::random::<u32>()
        )),
        publish_confirm_timeout_secs: Some("60".into()),
        bind_addr: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let auth = DaftraAuth::ApiKey(Secret::new("sim-api-key"));
    Settings::from_raw(&raw, Some((sim.base_url.clone(), auth))).expect("bench settings")
}

impl Bench {
    async fn start(args: Args) -> anyhow::Result<Bench> {
        log(&format!(
            "seeding the simulator with {} records",
            args.records
        ));
        let sim = Simulator::start_local(SimConfig {
            records: args.records,
            resources: vec![default_resource().name.clone()],
            ..Default::default()
        })?;
        let dir = tempfile::tempdir()?;
        let settings = settings(&args, &sim, &dir.path().join("bridge.sqlite3"));
        let app = Application::build_with_listener(settings, TcpListener::bind("127.0.0.1:0")?)?;
        Ok(Bench {
            args,
            sim,
            app,
            dir,
            figures: Vec::new(),
        })
    }

    fn poller(&self) -> &Poller {
        &self.app.poller
    }

    /// The feed of work orders, as the bridge polls it.
    fn feed(&self) -> Feed {
        self.app
            .state
            .served
            .feeds
            .by_resource(&default_resource().name)
            .expect("work orders are served")
            .clone()
    }

    fn set_latency(&self, latency_ms: u64) {
        self.sim.state.set_faults(Faults {
            latency_ms,
            ..Default::default()
        });
    }

    /// The poller's first poll: full scan, normalisation, diff and baseline commit; its time
    /// against pages × latency / concurrency, and the process's peak memory meanwhile.
    async fn first_poll(&mut self) -> anyhow::Result<()> {
        let (n, latency, c) = (
            self.args.records,
            self.args.latency_ms,
            self.args.concurrency,
        );
        self.set_latency(latency);
        let pages = n.div_ceil(1000);
        let limit = pages as f64 * latency as f64 / 1000.0 / c as f64;
        log(&format!(
            "first poll: {pages} pages, {latency} ms latency, concurrency {c}"
        ));
        let (rss_before, heap_before) = (proc_status_bytes("VmRSS"), heap_live());
        reset_peak_rss();
        reset_heap_peak();
        let started = Instant::now();
        let outcome = self.poller().poll_once(&self.feed()).await?;
        let took = started.elapsed().as_secs_f64();
        let (peak, heap_peak) = (proc_status_bytes("VmHWM"), heap_peak());
        anyhow::ensure!(
            outcome.records == n,
            "poll read {} records",
            outcome.records
        );
        self.figures.push(Figure::info(
            format!(
                "First poll (`Poller::poll_once`: scan, silent baseline, commit of {n} rows); \
                 physical limit of the scan = {pages} pages × {latency} ms / {c} = {limit:.2} s"
            ),
            format!("{} = {:.2}× limit", Unit::Secs.show(took), took / limit),
        ));
        self.figures.push(Figure::info(
            "  VmHWM of this benchmark's process through the first poll (the in-process \
             simulator's records included; the bridge alone is measured below)",
            Unit::Bytes.show(peak),
        ));
        self.figures.push(Figure::at_most(
            format!(
                "  the poll's own share: VmHWM − RSS before the poll ({:.0} MB, mostly the \
                 simulator's records)",
                rss_before / MB
            ),
            peak - rss_before,
            200.0 * MB,
            Unit::Bytes,
        ));
        self.figures.push(Figure::info(
            "  peak heap allocated by the poll (counting allocator: peak − live before)",
            Unit::Bytes.show(heap_peak - heap_before),
        ));
        Ok(())
    }

    /// A second scan after ~1% of the records changed upstream (`scan::scan`, as the poller
    /// runs it), then `diff::diff` on it; each step timed apart, with the heap its result holds.
    async fn diff_after_changes(&mut self) -> anyhow::Result<()> {
        let n = self.args.records;
        self.change_one_percent();
        log("second scan (1% changed) and diff");
        let feed = self.feed();
        let store = self.poller().store.clone();
        let name = default_resource().name.clone();
        let (hashes, load) = Step::measure(|| store.load_hashes(&name).map(Known::new));
        let mut hashes = hashes?;
        let (heap0, started) = (heap_live(), Instant::now());
        // As the poller scans: records whose content hash matches the snapshot are dropped.
        let scanned = scan(&feed, Keep::Changed(&mut hashes)).await?;
        let scan_step = Step::since(started, heap0);
        anyhow::ensure!(scanned.invalid.is_empty(), "invalid records in the scan");
        let all = scan(&feed, Keep::All).await?;
        let commit = self.time_baseline_commit(&all.records)?;
        drop(all);
        let ids: Vec<i64> = scanned.records.iter().map(|s| s.id).collect();
        let (d, diff_step) = Step::measure(|| {
            let before = store.load_many(&name, &ids).expect("snapshot rows");
            diff(&before, scanned.records, &HashSet::new(), true, &[])
        });
        anyhow::ensure!(d.changes.len() == n / 100, "{} changes", d.changes.len());
        let latency = self.args.latency_ms;
        let pages = n.div_ceil(1000);
        let limit = pages as f64 * latency as f64 / 1000.0 / self.args.concurrency as f64;
        self.figures.push(Figure::at_most(
            format!(
                "Full scan of {n} records / {pages} pages (`scan::scan`: fetch, parse, normalise \
                 to canonical JSON); limit = {pages} × {latency} ms / {} = {limit:.2} s, target 1.3 × limit",
                self.args.concurrency
            ),
            scan_step.secs,
            1.3 * limit,
            Unit::Secs,
        ));
        self.figures.push(Figure::info(
            "  the same scan as a multiple of the physical limit",
            format!("{:.2}× limit", scan_step.secs / limit),
        ));
        for (what, step) in [
            (format!("  `scan::scan` step: time, and heap its result holds ({latency} ms latency)"), &scan_step),
            (format!("  `Store::load_hashes` of {n} records (what a poll holds: an id and a hash each)"), &load),
            (format!("  `Store::commit_poll` of {n} upserts into an empty store (the first poll's commit)"), &commit),
        ] {
            self.figures.push(Figure::info(what, step.show()));
        }
        self.figures.push(Figure::at_most(
            format!(
                "Diff of {n} records against the snapshot, 1% changed ({} updates): hashes compared during the scan, then `Store::load_many` + `diff::diff` of the changed ones",
                d.changes.len()
            ),
            diff_step.secs * 1000.0,
            100.0,
            Unit::Millis,
        ));
        Ok(())
    }

    /// Commits `scanned` as a first poll would, into a new store.
    fn time_baseline_commit(&self, scanned: &[Scanned]) -> anyhow::Result<Step> {
        let writes: Vec<SnapshotWrite> = scanned
            .iter()
            .map(|s| SnapshotWrite::Upsert {
                id: s.id,
                record: s.canonical.clone(),
            })
            .collect();
        let store = Store::open(&self.dir.path().join("commit.sqlite3"))?;
        let (done, step) =
            Step::measure(|| store.commit_poll(&default_resource().name, &writes, &[]));
        done?;
        Ok(step)
    }

    /// Changes the status of every 100th work order in the simulator.
    fn change_one_percent(&self) {
        for id in (100..=self.args.records as i64).step_by(100) {
            let mut fields = Map::new();
            fields.insert("status".into(), common::edited_raw(id)["status"].clone());
            self.sim.state.update(id, fields);
        }
    }

    /// The bridge as deployed: `daftra-bridge serve` in a child process, polling the simulator
    /// at start; its VmHWM once /status reports the first poll, and that poll's duration.
    async fn serve_first_poll(&mut self) -> anyhow::Result<()> {
        self.set_latency(self.args.latency_ms);
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let db = self.dir.path().join("serve.sqlite3");
        let mut env = self.live_env();
        env.extend([
            ("DATABASE_URL".into(), format!("sqlite://{}", db.display())),
            // Nothing listens there: the publisher retries quietly, and the baseline emits nothing.
            (
                "AMQP_URL".into(),
                "amqp://guest:guest@127.0.0.1:1/%2f".into(),
            ),
            ("BIND_ADDR".into(), format!("127.0.0.1:{port}")),
            ("POLL_INTERVAL_SECS".into(), "3600".into()),
            ("POLL_DEADLINE_SECS".into(), "3600".into()),
        ]);
        log("first poll of `daftra-bridge serve` in a child process");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_daftra-bridge"))
            .arg("serve")
            .envs(env)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let status = wait_for_first_poll(port).await;
        let peak = proc_status_bytes_of(pid, "VmHWM");
        child.kill().await?;
        let status = status?;
        let took = status["last_duration_seconds"].as_f64().unwrap_or(f64::NAN);
        self.figures.push(Figure::at_most(
            "Peak memory of the bridge through its first poll: `daftra-bridge serve` in a child \
             process, VmHWM from /proc/PID/status",
            peak,
            200.0 * MB,
            Unit::Bytes,
        ));
        self.figures.push(Figure::info(
            format!(
                "  that first poll, as /status reports it ({})",
                status["last_outcome"].as_str().unwrap_or("?")
            ),
            Unit::Secs.show(took),
        ));
        Ok(())
    }

    /// CPU per record of reading a page (`parse_list`, `Page::decode`, canonical text, content
    /// hash) on one thread, for the five resources with the most columns (line items counted),
    /// from pages already fetched: the scan's own cost, without HTTP.
    async fn widest_resources(&mut self, base_url: &str, n: usize) -> anyhow::Result<()> {
        let mut widest: Vec<&'static daftra_bridge::catalogue::Resource> =
            daftra_bridge::catalogue::all().iter().collect();
        let width = |r: &daftra_bridge::catalogue::Resource| {
            r.columns.len() + r.line_items.iter().map(|g| g.columns.len()).sum::<usize>()
        };
        widest.sort_by_key(|r| std::cmp::Reverse(width(r)));
        let http = reqwest::Client::new();
        for resource in widest.into_iter().take(5) {
            let mut bodies = Vec::new();
            for page in 1..=n.div_ceil(1000) {
                let mut url = format!(
                    "{base_url}/{}.json?page={page}&limit=1000",
                    resource.list_path
                );
                for (k, v) in &resource.list_params {
                    url.push_str(&format!("&{k}={v}"));
                }
                let resp = http
                    .get(&url)
                    .header("apikey", "sim-api-key")
                    .send()
                    .await?;
                bodies.push(resp.error_for_status()?.bytes().await?);
            }
            let bytes: usize = bodies.iter().map(|b| b.len()).sum();
            let (records, cpu) =
                tokio::task::spawn_blocking(move || decode_pages(resource, &bodies)).await??;
            self.figures.push(Figure::info(
                format!(
                    "CPU per record of reading `{}` pages ({} columns with line items; {:.1} KB of JSON a record): parse, decode, canonical text, hash; one thread, best of 3",
                    resource.name,
                    width(resource),
                    bytes as f64 / records as f64 / 1024.0
                ),
                format!("{:.1} µs", cpu / records as f64 * 1e6),
            ));
        }
        Ok(())
    }

    /// Every declared resource, `--catalogue-records` each, 50 ms a page: one full round of
    /// `daftra-bridge serve` against total pages × latency / concurrency, its peak RSS and CPU.
    async fn catalogue_round(&mut self) -> anyhow::Result<()> {
        let n = self.args.catalogue_records;
        log(&format!(
            "catalogue: seeding every resource with {n} records"
        ));
        let sim = Simulator::start_local(SimConfig {
            records: n,
            ..Default::default()
        })?;
        sim.state.render_list_items();
        self.widest_resources(&sim.base_url, n).await?;
        sim.state.set_faults(Faults {
            latency_ms: self.args.latency_ms,
            ..Default::default()
        });
        log("catalogue: three rounds of `daftra-bridge serve` with DAFTRA_RESOURCES=all");
        let state = sim.state.clone();
        let rounds = round::measure(
            env!("CARGO_BIN_EXE_daftra-bridge"),
            self.dir.path(),
            &sim.base_url,
            self.args.concurrency,
            n,
            // 0.1% of every resource changed between polls.
            move || change_each_resource(&state, n, (n / 1000).max(1)),
        )
        .await;
        sim.stop().await;
        let r = rounds?;
        let limit =
            r.pages as f64 * self.args.latency_ms as f64 / 1000.0 / self.args.concurrency as f64;
        self.figures.push(Figure::at_most(
            format!(
                "One round of all {} resources × {n} records ({} pages, first poll: scan + baseline commit), `serve`; limit = {} × {} ms / {} = {:.2} s, target 1.3 × limit{}",
                r.resources, r.pages, r.pages, self.args.latency_ms, self.args.concurrency, limit,
                if r.first.all_succeeded { "" } else { " (some polls FAILED)" }
            ),
            r.first.wall_secs,
            1.3 * limit,
            Unit::Secs,
        ));
        self.figures.push(Figure::info(
            "  the same round as a multiple of the limit",
            format!("{:.2}× limit", r.first.wall_secs / limit),
        ));
        self.figures.push(Figure::info(
            "  CPU time of the bridge through that round (user + system)",
            Unit::Secs.show(r.first.cpu_secs),
        ));
        self.figures.push(Figure::at_most(
            format!(
                "Second round (full scans: scan + diff, no change), every resource triggered by POST /poll?full=true{}",
                if r.second.all_succeeded {
                    ""
                } else {
                    " (some polls FAILED)"
                }
            ),
            r.second.wall_secs,
            1.3 * limit,
            Unit::Secs,
        ));
        self.figures.push(Figure::info(
            "  CPU time of the bridge through the second round: the cost of every poll interval",
            Unit::Secs.show(r.second.cpu_secs),
        ));
        self.incremental_round_figures(&r, n);
        self.figures.push(Figure::at_most(
            "Peak RSS of `serve` through the three rounds (VmHWM)",
            r.peak_rss,
            300.0 * MB,
            Unit::Bytes,
        ));
        Ok(())
    }

    /// The third catalogue round: incremental polls of every resource after 0.1% changed.
    fn incremental_round_figures(&mut self, r: &round::Rounds, n: usize) {
        let with = &r.incremental;
        let most = with.iter().map(|(_, _, _, q)| *q).max().unwrap_or(0);
        let incremental = with
            .iter()
            .filter(|(_, _, m, _)| m == "incremental")
            .count();
        self.figures.push(Figure::at_most(
            format!(
                "Third round: after 0.1% of each resource changed ({} per resource), a poll of each of the {} resources with a strategy ({} of them read incrementally; the other {} have no change-time column and scan in full at their interval): most Daftra requests of one poll",
                (n / 1000).max(1),
                with.len(),
                incremental,
                r.resources - with.len(),
            ),
            most as f64,
            2.0,
            Unit::Count,
        ));
        self.figures.push(Figure::at_most(
            "  CPU time of the bridge through that round (user + system; /proc ticks of 10 ms)",
            r.third.cpu_secs,
            1.0,
            Unit::Secs,
        ));
        self.figures.push(Figure::info(
            "  wall time of that round",
            Unit::Secs.show(r.third.wall_secs),
        ));
        // The account of issue 21: 50,000 invoices, 100,000 stock transactions, 30,000 journals,
        // 20,000 clients, pages of 1,000, polled every minute, a full scan hourly (its pages
        // plus the probe's request).
        let pages: f64 = [50_000.0, 100_000.0, 30_000.0, 20_000.0]
            .iter()
            .map(|n: &f64| (n / 1000.0).ceil())
            .sum();
        let today = 60.0 * pages;
        let with_issue = pages + 4.0 + 59.0 * 4.0 * most as f64;
        self.figures.push(Figure::at_least(
            format!(
                "Daftra requests an hour for 200,000 records in 4 resources, 1-minute polls: every poll a full scan = {} vs hourly full scans + incremental polls of {most} request(s) as measured = {}; times fewer",
                thousands(today),
                thousands(with_issue)
            ),
            today / with_issue,
            5.0,
            Unit::Count,
        ));
    }

    /// `serve` on `--incremental-records` work orders, publishing to RabbitMQ: after its full
    /// scan, 10 records change and one incremental poll runs; its requests, CPU, peak RSS and
    /// the time until its 10 events are on a queue.
    async fn incremental_large(&mut self) -> anyhow::Result<()> {
        let n = self.args.incremental_records;
        log(&format!("incremental: seeding {n} work orders"));
        let sim = Simulator::start_local(SimConfig {
            records: n,
            resources: vec![default_resource().name.clone()],
            ..Default::default()
        })?;
        sim.state.set_faults(Faults {
            latency_ms: self.args.latency_ms,
            ..Default::default()
        });
        let state = sim.state.clone();
        let exchange = format!("bench.incremental.{}", std::process::id());
        log("incremental: a full scan, then 10 changes and one incremental poll of `serve`");
        let run = round::incremental_poll(
            env!("CARGO_BIN_EXE_daftra-bridge"),
            self.dir.path(),
            (&sim.base_url, self.args.concurrency),
            (&self.args.amqp_url, &exchange),
            10,
            move || {
                for id in (1..=10).map(|k| k * (n as i64 / 10)) {
                    let mut fields = Map::new();
                    fields.insert("status".into(), common::edited_raw(id)["status"].clone());
                    state.update(id, fields);
                }
            },
        )
        .await;
        sim.stop().await;
        let run = run?;
        self.figures.push(Figure::at_most(
            format!(
                "Incremental poll of {n} work orders after 10 changed, 50 ms a page (`serve`; its full scan before took {}): Daftra requests ({} poll, strategy {})",
                Unit::Secs.show(run.first_secs), run.mode, run.strategy
            ),
            run.requests as f64,
            3.0,
            Unit::Count,
        ));
        self.figures.push(Figure::at_most(
            "  CPU time of `serve` through that poll (the HTTP trigger, the poll, publishing its events; /proc ticks of 10 ms, so 0.00 is under 10 ms)",
            run.cpu_secs,
            0.05,
            Unit::Secs,
        ));
        self.figures.push(Figure::at_most(
            "  peak RSS of `serve` through that poll (VmHWM, reset before it)",
            run.peak_rss,
            60.0 * MB,
            Unit::Bytes,
        ));
        self.figures.push(Figure::info(
            "  the poll's duration, as /status reports it",
            Unit::Secs.show(run.poll_secs),
        ));
        self.figures.push(Figure::at_most(
            format!(
                "  from POST /poll to its events on a RabbitMQ queue ({} of 10 arrived); target: within the 60 s interval",
                run.events
            ),
            if run.events == 10 { run.events_secs } else { f64::INFINITY },
            60.0,
            Unit::Secs,
        ));
        Ok(())
    }

    /// `serve` on one resource of N records: first poll, then a second with 1% changed; peak
    /// RSS of each and RSS after, for every N of `--memory-records`.
    async fn memory_table(&mut self) -> anyhow::Result<()> {
        for n in self.args.memory_records.clone() {
            log(&format!("memory: {n} work orders"));
            let sim = Simulator::start_local(SimConfig {
                records: n,
                resources: vec![default_resource().name.clone()],
                ..Default::default()
            })?;
            let state = sim.state.clone();
            let row = round::memory_row(
                env!("CARGO_BIN_EXE_daftra-bridge"),
                self.dir.path(),
                &sim.base_url,
                self.args.concurrency,
                n,
                move || {
                    for id in (100..=n as i64).step_by(100) {
                        let mut fields = Map::new();
                        fields.insert("status".into(), common::edited_raw(id)["status"].clone());
                        state.update(id, fields);
                    }
                },
            )
            .await;
            sim.stop().await;
            let row = row?;
            let per_record = row.second_secs / n as f64 * 1e6;
            self.figures.push(Figure::info(
                format!("`serve`, {n} records: first poll (time, peak RSS), second poll with 1% changed (time, peak RSS), RSS 2 s after"),
                format!(
                    "{} / {} · {} / {} · {} ({:.1} µs per record)",
                    Unit::Secs.show(row.first_secs),
                    Unit::Bytes.show(row.first_peak),
                    Unit::Secs.show(row.second_secs),
                    Unit::Bytes.show(row.second_peak),
                    Unit::Bytes.show(row.rss_after),
                    per_record,
                ),
            ));
            if n >= 1_000_000 {
                self.figures.push(Figure::at_most(
                    format!("  second-poll peak RSS of `serve`, {n} records, 1% changed"),
                    row.second_peak,
                    150.0 * MB,
                    Unit::Bytes,
                ));
                self.figures.push(Figure::at_most(
                    format!("  RSS of `serve` after that poll, {n} records"),
                    row.rss_after,
                    100.0 * MB,
                    Unit::Bytes,
                ));
            }
        }
        Ok(())
    }

    /// One list page from the simulator as raw bytes, not parsed.
    async fn raw_page(&self, http: &reqwest::Client, page: usize) -> anyhow::Result<()> {
        let url = format!(
            "{}/api2/work_orders?page={page}&limit=1000",
            self.sim.base_url
        );
        let resp = http.get(url).header("apikey", "sim-api-key").send().await?;
        resp.error_for_status()?.bytes().await?;
        Ok(())
    }

    /// The floor any client meets against this simulator: every page as a raw GET, at the
    /// poll's latency and concurrency, bodies not parsed.
    async fn scan_floor(&mut self) -> anyhow::Result<()> {
        self.set_latency(self.args.latency_ms);
        let http = reqwest::Client::new();
        let pages = self.args.records.div_ceil(1000);
        let started = Instant::now();
        futures::stream::iter(1..=pages)
            .map(|page| self.raw_page(&http, page))
            .buffered(self.args.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        self.figures.push(Figure::info(
            format!(
                "  the simulator's floor: the same {pages} pages as raw GETs, {} in flight, bodies not parsed",
                self.args.concurrency
            ),
            Unit::Secs.show(started.elapsed().as_secs_f64()),
        ));
        Ok(())
    }

    /// Where a page's time goes without latency: the simulator alone (raw GET, body not
    /// parsed), the client (GET + envelope parse), and a whole scan at the configured concurrency.
    async fn upstream_costs(&mut self) -> anyhow::Result<()> {
        const SAMPLE: usize = 20;
        self.set_latency(0);
        let http = reqwest::Client::new();
        let started = Instant::now();
        for page in 1..=SAMPLE {
            self.raw_page(&http, page).await?;
        }
        let raw = started.elapsed().as_secs_f64() / SAMPLE as f64;
        let client = self.feed().account.client.clone();
        let started = Instant::now();
        for page in 1..=SAMPLE {
            client.list_page(default_resource(), page as u64).await?;
        }
        let parsed = started.elapsed().as_secs_f64() / SAMPLE as f64;
        let started = Instant::now();
        let pages: Vec<_> = client.pages(default_resource()).try_collect().await?;
        let fetch = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let clock = record::Clock::default();
        for page in pages {
            for decoded in page.decode(default_resource(), &clock) {
                let n = decoded.map_err(|i| i.error)?;
                black_box(Scanned::from_canonical(n.key(), n.canonical()));
            }
        }
        let normalise = started.elapsed().as_secs_f64();
        self.figures.push(Figure::info(
            "  simulator time per 1000-record page (raw GET, latency 0, body not parsed)",
            Unit::Millis.show(raw * 1000.0),
        ));
        self.figures.push(Figure::info(
            "  `DaftraClient::list_page` per page (GET + envelope parse, latency 0, one at a time)",
            Unit::Millis.show(parsed * 1000.0),
        ));
        self.figures.push(Figure::info(
            format!(
                "  all pages with `DaftraClient::pages`, latency 0, concurrency {}",
                self.args.concurrency
            ),
            Unit::Secs.show(fetch),
        ));
        self.figures.push(Figure::info(
            format!(
                "  `Page::decode` + `Scanned::from_canonical` of {} records (CPU, one thread)",
                self.args.records
            ),
            Unit::Millis.show(normalise * 1000.0),
        ));
        Ok(())
    }

    /// Fills the outbox with `updated` events through `Store::commit_poll`, then times a
    /// `Publisher::drain` to a fresh exchange with a bounded queue bound to it.
    async fn events_per_second(&mut self) -> anyhow::Result<()> {
        let n = self.args.events;
        log(&format!("building {n} events"));
        let store = self.poller().store.clone();
        let base = self.sim.base_url.clone();
        tokio::task::spawn_blocking(move || fill_outbox(&store, &base, n)).await??;
        let publisher = self.app.publisher.clone();
        let conn = publisher::connect(&publisher.amqp_url).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue =
            common::bind_bounded_queue(&channel, &publisher.exchange, "work_order.*").await?;
        log(&format!("publishing {n} events to {}", publisher.exchange));
        let started = Instant::now();
        let published = publisher.drain(&channel).await;
        let took = started.elapsed().as_secs_f64();
        let _ = channel
            .queue_delete(&queue, QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(&publisher.exchange, ExchangeDeleteOptions::default())
            .await;
        let _ = conn.close(200, "bench done").await;
        let published = published?;
        anyhow::ensure!(published == n, "published {published} of {n}");
        self.figures.push(Figure::at_least(
            format!("Events published from the outbox (`Publisher::drain`, {n} events, confirms)"),
            n as f64 / took,
            10_000.0,
            Unit::PerSec("events"),
        ));
        Ok(())
    }

    /// One consumer reads the whole event log through `GET /events` in pages of 500, over HTTP
    /// from the bridge's own routes, parsing each page as a consumer would.
    async fn feed_per_second(&mut self) -> anyhow::Result<()> {
        let store = self.poller().store.clone();
        if store.outbox_head()? < self.args.events as i64 {
            let (n, base, store) = (self.args.events, self.sim.base_url.clone(), store.clone());
            log(&format!("building {n} events"));
            tokio::task::spawn_blocking(move || fill_outbox(&store, &base, n)).await??;
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = self.app.state.clone();
        let server = actix_web::HttpServer::new(move || daftra_bridge::http::app(state.clone()))
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        let client = reqwest::Client::new();
        let (mut cursor, mut read) = (String::new(), 0usize);
        log("reading the event log through GET /events in pages of 500");
        let started = Instant::now();
        loop {
            let url = format!("http://127.0.0.1:{port}/events?limit=500&after={cursor}");
            let page: Value =
                serde_json::from_slice(&client.get(url).send().await?.bytes().await?)?;
            let events = page["events"].as_array().map_or(0, Vec::len);
            if events == 0 {
                break;
            }
            read += events;
            cursor = page["next_cursor"].as_str().unwrap_or_default().to_string();
        }
        let took = started.elapsed().as_secs_f64();
        handle.stop(true).await;
        anyhow::ensure!(read >= self.args.events, "read {read} events");
        self.figures.push(Figure::at_least(
            format!("Pull feed read by one consumer (`GET /events`, pages of 500, {read} events, JSON parsed)"),
            read as f64 / took,
            20_000.0,
            Unit::PerSec("events"),
        ));
        Ok(())
    }

    /// Exports of a 1,000,000-record snapshot by the built binary, in a child process.
    async fn snapshot_exports(&mut self) -> anyhow::Result<()> {
        let n = self.args.snapshot_records;
        let db = self.dir.path().join("snapshot.sqlite3");
        log(&format!("filling a snapshot of {n} records"));
        let path = db.clone();
        tokio::task::spawn_blocking(move || fill_snapshot(&path, n)).await??;
        let env = vec![(
            "DATABASE_URL".to_string(),
            format!("sqlite://{}", db.display()),
        )];
        let formats = [
            ("csv", 500_000.0, 64.0),
            ("xlsx", 150_000.0, 256.0),
            ("jsonl", 300_000.0, 64.0),
            ("parquet", 150_000.0, 128.0),
        ];
        for (format, rate, peak) in formats {
            log(&format!("exporting the snapshot as {format}"));
            let run = self.export(format, "snapshot", &env).await?;
            anyhow::ensure!(run.rows == n as u64, "exported {} rows", run.rows);
            self.push_export_figures(&format!("snapshot, {n} rows"), format, &run, rate, peak);
        }
        if let Some(old) = self.args.old_bin.clone() {
            self.old_and_new(&old, &db, n).await?;
        }
        Ok(())
    }

    /// CSV and XLSX exports of the same snapshot by the build at `old` and by this one, one
    /// after the other (old, new, old, new; the faster of each pair shown). The old build reads
    /// a copy of the snapshot without the migrations it does not know.
    async fn old_and_new(&mut self, old: &Path, db: &Path, n: usize) -> anyhow::Result<()> {
        let copy = self.dir.path().join("snapshot-old.sqlite3");
        std::fs::copy(db, &copy)?;
        let conn = rusqlite::Connection::open(&copy)?;
        conn.execute_batch(
            "DROP INDEX IF EXISTS snapshot_hashes; DELETE FROM schema_migrations WHERE version > 6;",
        )?;
        drop(conn);
        let env_of = |db: &Path| {
            vec![(
                "DATABASE_URL".to_string(),
                format!("sqlite://{}", db.display()),
            )]
        };
        let commit = old_commit(old);
        for format in ["csv", "xlsx"] {
            let mut best = [f64::INFINITY, f64::INFINITY];
            let mut rss = [0.0f64, 0.0];
            for _ in 0..2 {
                log(&format!(
                    "exporting the snapshot as {format}: old build, then this one"
                ));
                let runs = [
                    self.export_with(
                        &old.display().to_string(),
                        format,
                        "snapshot",
                        &env_of(&copy),
                    )
                    .await?,
                    self.export(format, "snapshot", &env_of(db)).await?,
                ];
                for (i, run) in runs.iter().enumerate() {
                    anyhow::ensure!(run.rows == n as u64, "exported {} rows", run.rows);
                    best[i] = best[i].min(run.seconds);
                    rss[i] = rss[i].max(run.max_rss);
                }
            }
            self.figures.push(Figure::info(
                format!(
                    "{} export of the same {n}-row snapshot: old build ({commit}) vs this one (best of two each, alternated)",
                    format.to_uppercase()
                ),
                format!(
                    "{} rows/s ({:.2} s, {}) vs {} rows/s ({:.2} s, {}): {:.2}×",
                    thousands(n as f64 / best[0]),
                    best[0],
                    Unit::Bytes.show(rss[0]),
                    thousands(n as f64 / best[1]),
                    best[1],
                    Unit::Bytes.show(rss[1]),
                    best[0] / best[1]
                ),
            ));
        }
        Ok(())
    }

    /// The same exports read live from the simulator (no latency).
    async fn live_exports(&mut self) -> anyhow::Result<(ChildRun, ChildRun)> {
        self.set_latency(0);
        let n = self.args.records;
        let env = self.live_env();
        let mut runs = Vec::new();
        for (format, rate, peak) in [("csv", 500_000.0, 64.0), ("xlsx", 150_000.0, 256.0)] {
            log(&format!("exporting live as {format}"));
            let run = self.export(format, "live", &env).await?;
            anyhow::ensure!(run.rows == n as u64, "exported {} rows", run.rows);
            self.push_export_figures(&format!("live, {n} rows"), format, &run, rate, peak);
            runs.push(run);
        }
        let xlsx = runs.pop().expect("two runs");
        let csv = runs.pop().expect("two runs");
        self.live_exports_at_latency(&env).await?;
        Ok((csv, xlsx))
    }

    /// Live CSV and XLSX exports with the bench's latency a page, against the network's limit
    /// (pages × latency / concurrency): CSV within 1.1× of it, XLSX within 1.3×.
    async fn live_exports_at_latency(&mut self, env: &[(String, String)]) -> anyhow::Result<()> {
        let (n, latency, c) = (
            self.args.records,
            self.args.latency_ms,
            self.args.concurrency,
        );
        self.set_latency(latency);
        let pages = n.div_ceil(1000);
        let limit = pages as f64 * latency as f64 / 1000.0 / c as f64;
        for (format, within) in [("csv", 1.1), ("xlsx", 1.3)] {
            log(&format!(
                "exporting live as {format} at {latency} ms a page"
            ));
            let run = self.export(format, "live", env).await?;
            anyhow::ensure!(run.rows == n as u64, "exported {} rows", run.rows);
            self.figures.push(Figure::at_most(
                format!(
                    "Live {} export of {n} work orders at {latency} ms a page (`daftra-bridge export`, wall time); limit = {pages} × {latency} ms / {c} = {limit:.2} s, target {within} × limit",
                    format.to_uppercase()
                ),
                run.seconds,
                within * limit,
                Unit::Secs,
            ));
            self.figures.push(Figure::info(
                "  CPU of the export process (user + system) and peak memory",
                format!(
                    "{:.2} s, {}",
                    run.cpu_seconds,
                    Unit::Bytes.show(run.max_rss)
                ),
            ));
        }
        self.set_latency(0);
        Ok(())
    }

    fn live_env(&self) -> Vec<(String, String)> {
        vec![
            ("DAFTRA_BASE_URL".into(), self.sim.base_url.clone()),
            ("DAFTRA_API_KEY".into(), "sim-api-key".into()),
            ("DAFTRA_PAGE_SIZE".into(), "1000".into()),
            (
                "DAFTRA_CONCURRENCY".into(),
                self.args.concurrency.to_string(),
            ),
        ]
    }

    fn push_export_figures(
        &mut self,
        what: &str,
        format: &str,
        run: &ChildRun,
        rate: f64,
        mb: f64,
    ) {
        let upper = format.to_uppercase();
        self.figures.push(Figure::at_least(
            format!("{upper} export, {what} (`daftra-bridge export`, child process, wall time)"),
            run.rows as f64 / run.seconds,
            rate,
            Unit::PerSec("rows"),
        ));
        self.figures.push(Figure::at_most(
            "  peak memory (max RSS, GNU time)",
            run.max_rss,
            mb * MB,
            Unit::Bytes,
        ));
    }

    /// Runs `daftra-bridge export work_orders` under GNU time in the temp folder.
    async fn export(
        &self,
        format: &str,
        source: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<ChildRun> {
        self.export_with(env!("CARGO_BIN_EXE_daftra-bridge"), format, source, env)
            .await
    }

    /// As [`Bench::export`], with the build at `bin`.
    async fn export_with(
        &self,
        bin: &str,
        format: &str,
        source: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<ChildRun> {
        let out = self.dir.path().join(format!("export.{format}"));
        let args = [
            bin,
            "export",
            "work_orders",
            "--source",
            source,
            "--format",
            format,
            "-o",
            &out.display().to_string(),
        ]
        .map(String::from);
        let run = timed_child(self.dir.path(), &args, env).await?;
        std::fs::remove_file(&out).ok();
        Ok(run)
    }

    /// `bench/baseline.py` (requests + pandas + openpyxl) against the same simulator, and its
    /// ratio to our live exports.
    async fn baseline(&mut self, ours: Option<&(ChildRun, ChildRun)>) -> anyhow::Result<()> {
        self.set_latency(0);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/baseline.py");
        let out = self.dir.path().join("baseline");
        std::fs::create_dir_all(&out)?;
        let args = [
            "python3".to_string(),
            script.display().to_string(),
            "--base-url".into(),
            self.sim.base_url.clone(),
            "--api-key".into(),
            "sim-api-key".into(),
            "--out-dir".into(),
            out.display().to_string(),
        ];
        log("running the Python baseline");
        let run = timed_child(self.dir.path(), &args, &[]).await?;
        let Some(report) = run.stdout_json() else {
            let why = run.stderr.lines().last().unwrap_or("no output").to_string();
            self.figures.push(Figure::info(
                "Baseline (Python, pandas)",
                format!("not run: {why}"),
            ));
            return Ok(());
        };
        let seconds = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
        let read = seconds("fetch_s") + seconds("dataframe_s");
        let baseline = Baseline {
            rows: report["rows"].as_f64().unwrap_or(f64::NAN),
            csv: read + seconds("csv_s"),
            xlsx: read + seconds("xlsx_s"),
            max_rss: run.max_rss,
        };
        self.figures.push(Figure::info(
            format!(
                "Baseline `bench/baseline.py` (Python {}, pandas {}): read every page + DataFrame",
                report["python"].as_str().unwrap_or("?"),
                report["pandas"].as_str().unwrap_or("?")
            ),
            Unit::Secs.show(read),
        ));
        self.figures.extend(baseline.compare(ours));
        self.figures.push(Figure::info(
            "  baseline total wall time (interpreter start and imports included)",
            Unit::Secs.show(run.seconds),
        ));
        Ok(())
    }
}

/// Time of one step of the poll, and the heap its result holds.
struct Step {
    secs: f64,
    heap_growth: f64,
}

impl Step {
    fn since(started: Instant, heap_before: f64) -> Step {
        Step {
            secs: started.elapsed().as_secs_f64(),
            heap_growth: heap_live() - heap_before,
        }
    }

    fn measure<T>(f: impl FnOnce() -> T) -> (T, Step) {
        let (heap, started) = (heap_live(), Instant::now());
        let out = f();
        (out, Step::since(started, heap))
    }

    fn show(&self) -> String {
        format!(
            "{}, holds {}",
            Unit::Millis.show(self.secs * 1000.0),
            Unit::Bytes.show(self.heap_growth)
        )
    }
}

/// What the Python baseline took: seconds to read + build the DataFrame + write each format.
struct Baseline {
    rows: f64,
    csv: f64,
    xlsx: f64,
    max_rss: f64,
}

impl Baseline {
    /// Its rates and peak memory, and how ours (the live exports, when run) compare.
    fn compare(&self, ours: Option<&(ChildRun, ChildRun)>) -> Vec<Figure> {
        let rate = |r: &ChildRun| r.rows as f64 / r.seconds;
        let (py_csv, py_xlsx) = (self.rows / self.csv, self.rows / self.xlsx);
        let vs = |r: Option<&ChildRun>, py: f64| {
            r.map_or(String::new(), |r| {
                format!(" → ours {:.1}× that", rate(r) / py)
            })
        };
        let our_peak = ours.map(|(c, x)| c.max_rss.max(x.max_rss));
        vec![
            Figure::info(
                "  baseline CSV rows/s (read + DataFrame + `to_csv`), vs our live CSV",
                format!("{}{}", Unit::PerSec("rows").show(py_csv), vs(ours.map(|o| &o.0), py_csv)),
            ),
            Figure::info(
                "  baseline XLSX rows/s (read + DataFrame + `to_excel`, openpyxl), vs our live XLSX",
                format!("{}{}", Unit::PerSec("rows").show(py_xlsx), vs(ours.map(|o| &o.1), py_xlsx)),
            ),
            Figure::info(
                "  baseline peak memory (max RSS, GNU time), vs the larger of our two live exports",
                format!(
                    "{}{}",
                    Unit::Bytes.show(self.max_rss),
                    our_peak.map_or(String::new(), |p| format!(" → ours {:.1}× smaller", self.max_rss / p))
                ),
            ),
        ]
    }
}

/// Appends `n` `updated` events of distinct work orders to the outbox in one commit.
/// Changes `k` records of every resource the simulator serves (ids spread over `1..=n`): a new
/// value in its first text column, as a Daftra user's edit.
fn change_each_resource(state: &daftra_bridge::sim::SimState, n: usize, k: usize) {
    for r in state.resources() {
        let column = r.columns.iter().find(|c| {
            c.kind == daftra_bridge::catalogue::ColumnKind::Text
                && !matches!(c.name.as_str(), "number" | "no" | "code")
        });
        let Some(column) = column else { continue };
        for id in (1..=k).map(|i| (i * (n / k)) as i64) {
            let mut fields = Map::new();
            fields.insert(column.name.clone(), Value::from(format!("edited {id}")));
            state.update_in(&r.name, id, fields);
        }
    }
}

fn fill_outbox(store: &Store, base: &str, n: usize) -> anyhow::Result<()> {
    let events = common::updated_events(base, n);
    store.commit_poll(&default_resource().name, &[], &events)?;
    Ok(())
}

/// Writes a snapshot of `n` seeded work orders to a new store at `path`, 50,000 per commit.
fn fill_snapshot(path: &Path, n: usize) -> anyhow::Result<()> {
    let store = Store::open(path)?;
    let ids: Vec<i64> = (1..=n as i64).collect();
    for chunk in ids.chunks(50_000) {
        let writes: Vec<SnapshotWrite> = chunk
            .iter()
            .map(|&id| {
                let s = Scanned::new(id, &common::work_order(id, None));
                SnapshotWrite::Upsert {
                    id,
                    record: s.canonical,
                }
            })
            .collect();
        store.commit_poll(&default_resource().name, &writes, &[])?;
    }
    Ok(())
}

/// A child process run under GNU time.
struct ChildRun {
    seconds: f64,
    /// User + system CPU seconds (GNU time).
    cpu_seconds: f64,
    /// Max RSS in bytes.
    max_rss: f64,
    /// From the bridge's `Exported N rows`.
    rows: u64,
    stdout: String,
    stderr: String,
}

impl ChildRun {
    fn stdout_json(&self) -> Option<Value> {
        serde_json::from_str(self.stdout.lines().last()?).ok()
    }
}

/// Runs `args` under `/usr/bin/time -f "%e %M"` in `dir` with `env` added (and no variable of
/// ours inherited), timing the wall clock here.
/// CPU seconds of the calling thread.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Reads every body as a scan does (parse, decode, canonical text, hash), three times; returns
/// the records read and the least CPU time of the three.
fn decode_pages(
    resource: &'static daftra_bridge::catalogue::Resource,
    bodies: &[bytes::Bytes],
) -> anyhow::Result<(usize, f64)> {
    let clock = record::Clock::default();
    let mut best = f64::INFINITY;
    let mut records = 0;
    for _ in 0..3 {
        records = 0;
        let started = thread_cpu_secs();
        for body in bodies {
            let page = daftra_bridge::daftra::parse_list(body).map_err(anyhow::Error::msg)?;
            for decoded in page.decode(resource, &clock) {
                let n = decoded.map_err(|i| i.error)?;
                black_box(Scanned::from_canonical(n.key(), n.canonical()));
                records += 1;
            }
        }
        best = best.min(thread_cpu_secs() - started);
    }
    Ok((records, best))
}

/// The short commit of the checkout a build at `bin` was made in (its `target/` sits in it).
fn old_commit(bin: &Path) -> String {
    let commit = bin
        .ancestors()
        .find(|d| d.join(".git").exists())
        .and_then(|dir| {
            let out = std::process::Command::new("git")
                .args([
                    "-C",
                    &dir.display().to_string(),
                    "rev-parse",
                    "--short",
                    "HEAD",
                ])
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        });
    commit
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| bin.display().to_string())
}

async fn timed_child(
    dir: &Path,
    args: &[String],
    env: &[(String, String)],
) -> anyhow::Result<ChildRun> {
    let time_file = dir.join("time.txt");
    let mut cmd = tokio::process::Command::new(GNU_TIME);
    cmd.arg("-f")
        .arg("%e %M %U %S")
        .arg("-o")
        .arg(&time_file)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("DAFTRA_") || k == "DATABASE_URL" || k == "AMQP_URL" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let started = Instant::now();
    let output = cmd.output().await?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && !args[0].starts_with("python") {
        anyhow::bail!("{} failed: {stderr}", args.join(" "));
    }
    let timing = std::fs::read_to_string(&time_file)?;
    let fields: Vec<f64> = timing
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(f64::NAN))
        .collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or(f64::NAN);
    let max_kb = field(1);
    let cpu_seconds = field(2) + field(3);
    let rows = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Exported ")?
                .strip_suffix(" rows")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Ok(ChildRun {
        seconds,
        cpu_seconds,
        max_rss: max_kb * 1024.0,
        rows,
        stdout,
        stderr,
    })
}

fn machine() -> String {
    let uname = std::process::Command::new("uname")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(String::new(), |kb| format!(", {:.0} GB RAM", kb / MB));
    format!("`{uname}`; nproc {cores}; CPU {cpu}{mem}")
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    format!("cargo bench --bench e2e -- {}", args.join(" "))
}

fn table(figures: &[Figure]) -> String {
    let mut t =
        String::from("| figure | value | target | ratio / pass |\n| --- | --- | --- | --- |\n");
    for f in figures {
        t.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            f.name, f.value, f.target, f.verdict
        ));
    }
    t
}

const BEGIN: &str = "<!-- e2e:begin (written by `cargo bench --bench e2e`) -->";
const END: &str = "<!-- e2e:end -->";

/// Where and when the figures were taken.
struct RunInfo {
    started: Instant,
    /// `/proc/loadavg` at the start: the machine may be shared.
    load: String,
    /// `git describe`, and whether the working tree differed from it.
    code: String,
}

impl RunInfo {
    fn now() -> RunInfo {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let changed = git(&["status", "--porcelain", "--untracked-files=no", "src"]);
        let code = format!(
            "commit {}{}",
            git(&["rev-parse", "--short", "HEAD"]),
            if changed.is_empty() {
                String::new()
            } else {
                format!(
                    " + uncommitted changes in {} file(s) under src/",
                    changed.lines().count()
                )
            }
        );
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        RunInfo {
            started: Instant::now(),
            load: load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            code,
        }
    }
}

/// Replaces the generated section of BENCHMARKS.md (between the markers), keeping the rest.
fn write_report(table: &str, run: &RunInfo) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let section = format!(
        "{BEGIN}\n\n\
         - Date: {}\n\
         - Machine: {}; load average at the start {}\n\
         - Code: {}\n\
         - Command: `{}` (release build; the run took {:.0} s)\n\
         - Peak memory of child processes: GNU time (`/usr/bin/time -f \"%e %M\"`, Debian package `time`)\n\n\
         {table}\n{END}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine(),
        run.load,
        run.code,
        command_line(),
        run.started.elapsed().as_secs_f64(),
    );
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("# Benchmarks\n\n{section}\n{old}"),
    };
    std::fs::write(&path, new)?;
    Ok(path)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = RunInfo::now();
    let mut phases = args.phases.clone();
    phases.sort_by_key(|p| *p as u8);
    phases.dedup();
    let write = !args.no_write && phases.len() == ALL_PHASES;
    let keep = args.keep;
    let mut bench = Bench::start(args).await?;
    let mut live = None;
    for phase in phases {
        match phase {
            Phase::Poll => {
                bench.first_poll().await?;
                bench.scan_floor().await?;
                bench.serve_first_poll().await?;
                bench.diff_after_changes().await?;
                bench.upstream_costs().await?;
            }
            Phase::Events => bench.events_per_second().await?,
            Phase::Feed => bench.feed_per_second().await?,
            Phase::Snapshot => bench.snapshot_exports().await?,
            Phase::Live => live = Some(bench.live_exports().await?),
            Phase::Baseline => bench.baseline(live.as_ref()).await?,
            Phase::Catalogue => bench.catalogue_round().await?,
            Phase::Memory => bench.memory_table().await?,
            Phase::Incremental => bench.incremental_large().await?,
        }
    }
    bench.sim.stop().await;
    let table = table(&bench.figures);
    println!("\n{table}");
    if write {
        let path = write_report(&table, &run)?;
        log(&format!("wrote {}", path.display()));
    }
    if keep {
        log(&format!("kept {}", bench.dir.keep().display()));
    }
    Ok(())
}
