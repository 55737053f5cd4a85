//! The PostgreSQL store beside SQLite on the same machine:
//! the first poll's commit of `--records` records (pages as they arrive, then the baseline mark;
//! and one commit of every record, as with `POLL_EMIT_INITIAL`), a later poll with 1% changed
//! (rows the commit wrote, from PostgreSQL's row versions), and a CSV export of
//! `--export-records` snapshot rows by the release binary in a child process (rows/s and peak
//! RSS under GNU time).
//!
//! `cargo bench --bench postgres -- --records 100000 --export-records 1000000`
//! (needs PostgreSQL on `TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432, where
//! it makes and drops a database of its own).

mod common;

use std::path::Path;
use std::time::Instant;

use daftra_bridge::catalogue::default_resource;
use daftra_bridge::diff::Scanned;
use daftra_bridge::store::{Location, SnapshotWrite, Store};

const GNU_TIME: &str = "/usr/bin/time";

struct Args {
    records: usize,
    export_records: usize,
    server: String,
}

fn args() -> Args {
    let mut a = Args {
        records: 100_000,
        export_records: 1_000_000,
        server: std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
    };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        match w[0].as_str() {
            "--records" => a.records = w[1].parse().expect("--records N"),
            "--export-records" => a.export_records = w[1].parse().expect("--export-records N"),
            _ => {}
        }
    }
    a
}

/// A database of this run's own, dropped at the end.
struct Database {
    server: String,
    name: String,
}

impl Database {
    fn create(server: &str) -> anyhow::Result<Database> {
        let name = format!("bridge_bench_{:x}", rand::random::<u32>());
        let mut admin = postgres::Client::connect(&format!("{server}/postgres"), postgres::NoTls)?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(Database {
            server: server.to_string(),
            name,
        })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn client(&self) -> anyhow::Result<postgres::Client> {
        Ok(postgres::Client::connect(&self.url(), postgres::NoTls)?)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut admin) =
            postgres::Client::connect(&format!("{}/postgres", self.server), postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Opens a store and, on PostgreSQL, takes the leadership its commits need.
fn open(
    location: &Location,
) -> anyhow::Result<(Store, Option<Box<dyn daftra_bridge::store::LeaderLock>>)> {
    let store = Store::connect(location)?;
    let lock = match store.leader_lock() {
        Some(mut lock) => {
            let taken = lock.try_acquire("bench")?.expect("no other leader");
            store.set_fencing_token(Some(taken.token));
            Some(lock)
        }
        None => None,
    };
    Ok((store, lock))
}

/// `(id, canonical JSON)` of work orders `1..=n`.
fn canonical(n: usize, changed_every: Option<i64>) -> Vec<(i64, String)> {
    (1..=n as i64)
        .map(|id| {
            (
                id,
                Scanned::new(id, &common::work_order(id, changed_every)).canonical,
            )
        })
        .collect()
}

struct Commits {
    pages: f64,
    single: f64,
    one_percent: f64,
}

/// Runs to take the median of: checkpoints and autovacuum make single runs vary by ±30%.
const RUNS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of [`RUNS`] runs of [`commits`], each on fresh stores.
fn median_commits(
    records: &[(i64, String)],
    changed: &[(i64, String)],
    make: &dyn Fn(&str) -> anyhow::Result<Location>,
) -> anyhow::Result<Commits> {
    let runs: Vec<Commits> = (0..RUNS)
        .map(|_| commits(records, changed, make))
        .collect::<anyhow::Result<_>>()?;
    Ok(Commits {
        pages: median(runs.iter().map(|c| c.pages).collect()),
        single: median(runs.iter().map(|c| c.single).collect()),
        one_percent: median(runs.iter().map(|c| c.one_percent).collect()),
    })
}

/// The three commits on fresh stores at `make()`.
fn commits(
    records: &[(i64, String)],
    changed: &[(i64, String)],
    make: &dyn Fn(&str) -> anyhow::Result<Location>,
) -> anyhow::Result<Commits> {
    let resource = &default_resource().name;
    let (store, _lock) = open(&make("pages")?)?;
    let started = Instant::now();
    for page in records.chunks(daftra_bridge::scan::BASELINE_BATCH_ROWS) {
        store.write_baseline_page(resource, page)?;
    }
    store.commit_poll(resource, &[], &[])?;
    let pages = started.elapsed().as_secs_f64();
    if std::env::var("BENCH_VERBOSE").is_ok() {
        eprintln!("pages run: {pages:.3} s");
    }

    let (single_store, _single_lock) = open(&make("single")?)?;
    let writes: Vec<SnapshotWrite> = records
        .iter()
        .map(|(id, r)| SnapshotWrite::Upsert {
            id: *id,
            record: r.clone(),
        })
        .collect();
    let started = Instant::now();
    single_store.commit_poll(resource, &writes, &[])?;
    let single = started.elapsed().as_secs_f64();

    let writes: Vec<SnapshotWrite> = changed
        .iter()
        .map(|(id, r)| SnapshotWrite::Upsert {
            id: *id,
            record: r.clone(),
        })
        .collect();
    let events = common::updated_events("bench", writes.len());
    let started = Instant::now();
    store.commit_poll(resource, &writes, &events)?;
    let one_percent = started.elapsed().as_secs_f64();
    Ok(Commits {
        pages,
        single,
        one_percent,
    })
}

/// `daftra-bridge export work_orders --source snapshot --format csv` under GNU time:
/// `(seconds, max RSS bytes)`.
fn export(dir: &Path, database_url: &str) -> anyhow::Result<(f64, f64)> {
    let out = dir.join("export.csv");
    let times = dir.join("time.txt");
    let started = Instant::now();
    let status = std::process::Command::new(GNU_TIME)
        .args(["-f", "%M", "-o"])
        .arg(&times)
        .arg(env!("CARGO_BIN_EXE_daftra-bridge"))
        .args([
            "export",
            "work_orders",
            "--source",
            "snapshot",
            "--format",
            "csv",
            "-o",
        ])
        .arg(&out)
        .env("DATABASE_URL", database_url)
        .env("DAFTRA_API_KEY", "unused")
        .env("DAFTRA_SUBDOMAIN", "unused")
        .stderr(std::process::Stdio::null())
        .status()?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "export failed");
    let kb: f64 = std::fs::read_to_string(&times)?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(f64::NAN);
    std::fs::remove_file(&out).ok();
    Ok((seconds, kb * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let n = a.records;
    println!("Building {n} work orders...");
    let records = canonical(n, None);
    let changed: Vec<(i64, String)> = canonical(n, Some(100))
        .into_iter()
        .filter(|(id, _)| id % 100 == 0)
        .collect();

    let run = std::cell::Cell::new(0);
    let sqlite = median_commits(&records, &changed, &|name| {
        run.set(run.get() + 1);
        Ok(Location::Sqlite(
            dir.path().join(format!("{name}-{}.sqlite3", run.get())),
        ))
    })?;
    let databases = std::cell::RefCell::new(Vec::new());
    let pg = median_commits(&records, &changed, &|_| {
        let db = Database::create(&a.server)?;
        let url = db.url();
        databases.borrow_mut().push(db);
        Ok(Location::Postgres(url))
    })?;
    // Rows the 1% commit wrote: those whose row version is that of a changed record (100).
    let written = {
        let dbs = databases.borrow();
        let mut c = dbs[0].client()?;
        let row = c.query_one(
            "SELECT count(*) FROM snapshot WHERE xmin = (SELECT xmin FROM snapshot WHERE id = 100)",
            &[],
        )?;
        row.get::<_, i64>(0)
    };

    println!(
        "Filling {} snapshot rows for the export...",
        a.export_records
    );
    let export_records = canonical(a.export_records, None);
    let sqlite_export = dir.path().join("export.sqlite3");
    let export_db = Database::create(&a.server)?;
    for location in [
        Location::Sqlite(sqlite_export.clone()),
        Location::Postgres(export_db.url()),
    ] {
        let (store, _lock) = open(&location)?;
        for chunk in export_records.chunks(10_000) {
            store.write_baseline_page(&default_resource().name, chunk)?;
        }
        store.commit_poll(&default_resource().name, &[], &[])?;
    }
    drop(export_records);
    let sqlite_url = format!("sqlite://{}", sqlite_export.display());
    let exports = |url: &str| -> anyhow::Result<(f64, f64)> {
        let runs: Vec<(f64, f64)> = (0..RUNS)
            .map(|_| export(dir.path(), url))
            .collect::<anyhow::Result<_>>()?;
        Ok((
            median(runs.iter().map(|r| r.0).collect()),
            runs.iter().map(|r| r.1).fold(0.0, f64::max),
        ))
    };
    let (sqlite_s, sqlite_rss) = exports(&sqlite_url)?;
    let (pg_s, pg_rss) = exports(&export_db.url())?;
    let rows = a.export_records as f64;

    let mb = |b: f64| b / 1_048_576.0;
    println!();
    println!("| figure ({n} records; export {} rows; median of {RUNS} runs) | SQLite | PostgreSQL | PostgreSQL / SQLite |", a.export_records);
    println!("| --- | --- | --- | --- |");
    println!(
        "| first poll's commit: its pages, {} writes of {} rows (`write_baseline_page`, as the poller batches them) + baseline mark | {:.2} s | {:.2} s | {:.2}× (target ≤ 2×) |",
        n.div_ceil(daftra_bridge::scan::BASELINE_BATCH_ROWS),
        daftra_bridge::scan::BASELINE_BATCH_ROWS,
        sqlite.pages,
        pg.pages,
        pg.pages / sqlite.pages
    );
    println!(
        "| one `commit_poll` of every record (`POLL_EMIT_INITIAL` path, events aside) | {:.2} s | {:.2} s | {:.2}× |",
        sqlite.single,
        pg.single,
        pg.single / sqlite.single
    );
    println!(
        "| later poll, 1% changed: `commit_poll` of {} upserts + {} events | {:.1} ms | {:.1} ms | {:.2}× |",
        changed.len(),
        changed.len(),
        sqlite.one_percent * 1000.0,
        pg.one_percent * 1000.0,
        pg.one_percent / sqlite.one_percent
    );
    println!("|   snapshot rows that commit wrote (PostgreSQL row versions, first run) | | {written} of {n} | |");
    println!(
        "| CSV export from the snapshot (child process, wall time) | {:.0} rows/s | {:.0} rows/s | {:.2}× (target ≥ 300,000 rows/s) |",
        rows / sqlite_s,
        rows / pg_s,
        sqlite_s / pg_s
    );
    println!(
        "|   peak memory of the exporting process (max RSS) | {:.0} MB | {:.0} MB | |",
        mb(sqlite_rss),
        mb(pg_rss)
    );
    Ok(())
}
