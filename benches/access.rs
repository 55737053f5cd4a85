//! What checking a caller costs on every request (`http::gate::caller`, as the routes call it):
//!
//! - `access/key_sqlite_1000_keys`: an access key among 1,000 in SQLite (a store lookup on a
//!   worker thread, SHA-256, a constant-time compare, expiry, the per-minute count);
//! - `access/key_postgres_1000_keys`: the same on PostgreSQL (`TEST_POSTGRES_URL`, default
//!   postgres://postgres@127.0.0.1:5432; skipped with a note when it does not answer);
//! - `access/signed_link`: a signed link with three parameters (HMAC-SHA256, no store);
//! - `access/export_token`: `EXPORT_TOKEN`, the baseline.
//!
//! `cargo bench --bench access`

use std::hint::black_box;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::test::TestRequest;
use criterion::{criterion_group, criterion_main, Criterion};
use daftra_bridge::access::{links, Scopes};
use daftra_bridge::config::{DaftraAuth, RawEnv, Secret, Settings};
use daftra_bridge::http::gate;
use daftra_bridge::http::AppState;
use daftra_bridge::keyring::{self, KeySpec};
use daftra_bridge::startup::Application;

const KEYS: usize = 1_000;
const EXPORT_TOKEN: &str = "bench-export-token";

fn settings(database_url: String) -> Settings {
    let raw = RawEnv {
        database_url: Some(database_url),
        bind_addr: Some("127.0.0.1:0".into()),
        export_token: Some(EXPORT_TOKEN.into()),
        ..Default::default()
    };
    let auth = DaftraAuth::ApiKey(Secret::new("unused"));
    Settings::from_raw(&raw, Some(("http://127.0.0.1:9".into(), auth))).expect("bench settings")
}

/// A bridge's state on `database_url` holding 1,000 keys; returns it and the whole last key
/// (a key per benchmark: each has a per-minute count of its own).
fn state_with_keys(database_url: String, names: &[&str]) -> (AppState, Vec<String>) {
    let app = Application::build_with_listener(
        settings(database_url),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .expect("app");
    let now = chrono::Utc::now().timestamp();
    let spec = |name: String| KeySpec {
        name,
        scopes: Scopes {
            exports: vec!["*".into()],
            ..Default::default()
        },
        expires_at: Some(now + 86_400),
        max_exports: 2,
        per_minute: 1_000_000,
    };
    for i in 0..KEYS - names.len() {
        keyring::create(&app.state.store, spec(format!("key{i}")), now).unwrap();
    }
    let wanted = names
        .iter()
        .map(|n| {
            let (_, token) = keyring::create(&app.state.store, spec(n.to_string()), now).unwrap();
            token.expose().to_string()
        })
        .collect();
    (app.state.clone(), wanted)
}

fn bench_key(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    state: &AppState,
    key: &str,
) {
    let req = TestRequest::get()
        .uri("/exports/invoices.csv")
        .insert_header(("authorization", format!("Bearer {key}")))
        .to_http_request();
    c.bench_function(name, |b| {
        b.iter(|| {
            let caller = rt.block_on(gate::caller(state, &req, true));
            assert!(matches!(caller, Ok(gate::Caller::Key(_))), "{caller:?}");
        })
    });
}

fn pg_server() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database of this run's own: its name, or `None` when PostgreSQL does not answer.
fn postgres_database() -> Option<String> {
    let name = format!("bridge_bench_access_{:x}", rand::random::<u32>());
    let mut admin =
        postgres::Client::connect(&format!("{}/postgres", pg_server()), postgres::NoTls).ok()?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .ok()?;
    Some(name)
}

fn drop_database(name: &str) {
    if let Ok(mut admin) =
        postgres::Client::connect(&format!("{}/postgres", pg_server()), postgres::NoTls)
    {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("bridge.db").display());
    let (state, keys) = state_with_keys(sqlite, &["bench"]);
    bench_key(c, &rt, "access/key_sqlite_1000_keys", &state, &keys[0]);

    match postgres_database() {
        Some(name) => {
            let (pg_state, pg_keys) =
                state_with_keys(format!("{}/{name}", pg_server()), &["bench"]);
            bench_key(
                c,
                &rt,
                "access/key_postgres_1000_keys",
                &pg_state,
                &pg_keys[0],
            );
            drop(pg_state);
            drop_database(&name);
        }
        None => {
            eprintln!("note: PostgreSQL does not answer; access/key_postgres_1000_keys skipped")
        }
    }

    let pairs = vec![
        ("payment_status".to_string(), "unpaid".to_string()),
        ("fields".to_string(), "id,no,total".to_string()),
        ("sort".to_string(), "-date".to_string()),
    ];
    let expires = chrono::Utc::now().timestamp() + 86_400;
    let query = links::sign(
        state.access.link_key.expose().as_bytes(),
        "/exports/invoices.csv",
        &pairs,
        expires,
    );
    let req = TestRequest::get()
        .uri(&format!("/exports/invoices.csv?{query}"))
        .to_http_request();
    c.bench_function("access/signed_link", |b| {
        b.iter(|| {
            let caller = rt.block_on(gate::caller(&state, black_box(&req), true));
            assert!(matches!(caller, Ok(gate::Caller::Link)), "{caller:?}");
        })
    });
    let req = TestRequest::get()
        .uri("/exports/invoices.csv")
        .insert_header(("authorization", format!("Bearer {EXPORT_TOKEN}")))
        .to_http_request();
    c.bench_function("access/export_token", |b| {
        b.iter(|| {
            let caller = rt.block_on(gate::caller(&state, black_box(&req), true));
            assert!(matches!(caller, Ok(gate::Caller::ExportToken)));
        })
    });
}

criterion_group!(
    name = access;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = benches
);
criterion_main!(access);
