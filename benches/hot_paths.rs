//! Micro-benchmarks of the bridge's hot paths, on seeded work orders:
//!
//! - `diff/100k_1pct_changed`: canonical serialisation (`Scanned::new`) of 100,000 normalised work
//!   orders and `diff::diff` against a snapshot in which ~1% differ, as the poller does each poll
//!   (`100k_1pct_changed_diff_only`: `diff::diff` alone);
//! - `export/snapshot_decode_100k`: the stored JSON of 100,000 rows read by `StoredRow::parse`,
//!   as a snapshot export does before its sink;
//! - `export/csv_100k`: 100,000 rows through `CsvSink` into memory;
//! - `export/xlsx_20k`: 20,000 rows through `XlsxSink` to a temporary file;
//! - `events/to_outbox_updated`: the CloudEvents JSON of one `updated` event.
//!
//! `cargo bench --bench hot_paths`

mod common;

use std::collections::{HashMap, HashSet};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use daftra_bridge::catalogue::{default_resource, Column};
use daftra_bridge::diff::{diff, Scanned};
use daftra_bridge::events::to_outbox;
use daftra_bridge::export::csv::CsvSink;
use daftra_bridge::export::xlsx::XlsxSink;
use daftra_bridge::export::{ExportQuery, RowSink, StoredRow};
use daftra_bridge::record::{self, Record};

const DIFF_RECORDS: usize = 100_000;
const CSV_RECORDS: usize = 100_000;
const XLSX_RECORDS: usize = 20_000;
/// One record in this many changed between the snapshot and the scan (~1%).
const CHANGED_EVERY: i64 = 100;

fn columns() -> Vec<&'static Column> {
    ExportQuery::all(default_resource()).columns
}

/// The stored snapshot of `records`: id -> canonical JSON, as `Store::load_snapshot` returns it.
fn snapshot_of(records: &[Record]) -> HashMap<i64, String> {
    records
        .iter()
        .map(|r| {
            let s = Scanned::new(record::key(default_resource(), r), r);
            (s.id, s.canonical)
        })
        .collect()
}

fn bench_diff(c: &mut Criterion) {
    let snapshot = snapshot_of(&common::work_orders(DIFF_RECORDS, None));
    let scan = common::work_orders(DIFF_RECORDS, Some(CHANGED_EVERY));
    let keep = HashSet::new();
    let changes = DIFF_RECORDS / CHANGED_EVERY as usize;
    let mut g = c.benchmark_group("diff");
    g.sample_size(10);
    g.throughput(Throughput::Elements(DIFF_RECORDS as u64));
    g.bench_function("100k_1pct_changed", |b| {
        b.iter(|| {
            let d = diff(&snapshot, scanned(&scan), &keep, true, &[]);
            assert_eq!(d.changes.len(), changes);
            d
        })
    });
    g.bench_function("100k_1pct_changed_diff_only", |b| {
        b.iter_batched(
            || scanned(&scan),
            |scanned| diff(&snapshot, scanned, &keep, true, &[]),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// `records` as the scan hands them to `diff`: key and canonical JSON.
fn scanned(records: &[Record]) -> Vec<Scanned> {
    records
        .iter()
        .map(|r| Scanned::new(record::key(default_resource(), r), r))
        .collect()
}

/// What a snapshot export does per row before the sink: read the stored JSON in place.
fn bench_snapshot_decode(c: &mut Criterion) {
    let texts: Vec<String> = snapshot_of(&common::work_orders(CSV_RECORDS, None))
        .into_values()
        .collect();
    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CSV_RECORDS as u64));
    g.bench_function("snapshot_decode_100k", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(StoredRow::parse(t).expect("stored JSON"));
            }
        })
    });
    g.finish();
}

fn bench_csv(c: &mut Criterion) {
    let records = common::work_orders(CSV_RECORDS, None);
    let columns = columns();
    let mut out: Vec<u8> = Vec::with_capacity(64 << 20);
    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    g.throughput(Throughput::Elements(CSV_RECORDS as u64));
    g.bench_function("csv_100k", |b| {
        b.iter(|| {
            out.clear();
            let mut sink = CsvSink::new(&mut out, false).expect("sink");
            sink.header(&columns).expect("header");
            for r in &records {
                sink.row(&columns, r).expect("row");
            }
            sink.finish().expect("finish");
        })
    });
    g.finish();
}

fn bench_xlsx(c: &mut Criterion) {
    let records = common::work_orders(XLSX_RECORDS, None);
    let columns = columns();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("work_orders.xlsx");
    let mut g = c.benchmark_group("export");
    g.sample_size(10);
    g.throughput(Throughput::Elements(XLSX_RECORDS as u64));
    g.bench_function("xlsx_20k", |b| {
        b.iter(|| {
            let mut sink = XlsxSink::new(&path, &default_resource().name);
            sink.header(&columns).expect("header");
            for r in &records {
                sink.row(&columns, r).expect("row");
            }
            sink.finish().expect("finish");
            sink.save(columns.len()).expect("save");
        })
    });
    g.finish();
}

fn bench_to_outbox(c: &mut Criterion) {
    let change = common::updated_change(4242);
    c.bench_function("events/to_outbox_updated", |b| {
        b.iter(|| {
            to_outbox(
                default_resource(),
                black_box("https://acme.daftra.com"),
                "2026-11-29T13:00:00Z",
                black_box(&change),
                &Default::default(),
            )
        })
    });
}

criterion_group!(
    benches,
    bench_diff,
    bench_snapshot_decode,
    bench_csv,
    bench_xlsx,
    bench_to_outbox
);
criterion_main!(benches);
