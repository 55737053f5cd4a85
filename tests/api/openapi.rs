//! `GET /openapi.json`: the document lists exactly the routes and methods `src/http/mod.rs`
//! registers, is served without a token, and a running bridge conforms to it (schemathesis).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{spawn_app, tool, Options};

/// The document as served (`src/http/openapi.json`, compiled into the bridge).
const DOCUMENT: &str = include_str!("../../src/http/openapi.json");

/// schemathesis release the test is written for (`.ci/run` installs it).
const SCHEMATHESIS: &str = "4.32.5";

/// One token for all three guards, so schemathesis's single `Authorization` header passes each.
const TOKEN: &str = "openapi-test-token";

/// Methods by path template.
type Routes = BTreeMap<String, BTreeSet<String>>;

/// The index just past the string literal that starts at `start` (a `"`).
fn skip_literal(src: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < src.len() && src[i] != b'"' {
        i += if src[i] == b'\\' { 2 } else { 1 };
    }
    i + 1
}

/// The string literals of `src`, in order.
fn literals(src: &str) -> Vec<&str> {
    let (b, mut out, mut i) = (src.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'"' {
            let end = skip_literal(b, i);
            out.push(&src[i + 1..end - 1]);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// The text between the `(` at `open` and its matching `)`, string literals skipped over.
fn call_args(src: &str, open: usize) -> &str {
    let (b, mut depth, mut i) = (src.as_bytes(), 0usize, open);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_literal(b, i);
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &src[open + 1..i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced call at byte {open}")
}

/// The routes registered in `src/http/mod.rs`: each call of `get_or_head(`, `only(` or
/// `methods(` whose first argument is a literal path, with the methods it allows (GET and HEAD,
/// or its `allow` literal, which must name exactly the `web::get()`... routes it is given).
fn registered_routes(src: &str) -> Routes {
    let mut routes = Routes::new();
    for helper in ["get_or_head(", "only(", "methods("] {
        for (at, _) in src.match_indices(helper) {
            let before = src[..at].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' {
                continue;
            }
            let open = at + helper.len() - 1;
            let args = call_args(src, open);
            if !args.trim_start().starts_with("\"/") {
                continue; // the helpers' own definitions and calls with a variable path
            }
            let lits = literals(args);
            let path = lits[0].to_string();
            let given: BTreeSet<String> = ["get", "post", "put", "patch", "delete", "head"]
                .iter()
                .filter(|m| args.contains(&format!("web::{m}()")))
                .map(|m| m.to_uppercase())
                .collect();
            let allowed: BTreeSet<String> = if helper == "get_or_head(" {
                assert!(given.is_empty(), "{path}: get_or_head takes web::to(...)");
                ["GET", "HEAD"].map(String::from).into()
            } else {
                let allow = lits.last().expect("an allow literal");
                let allowed = allow.split(',').map(|m| m.trim().to_string()).collect();
                assert_eq!(
                    given, allowed,
                    "{path}: the Allow literal {allow:?} names its routes"
                );
                allowed
            };
            assert!(
                routes.insert(path.clone(), allowed).is_none(),
                "{path} registered twice"
            );
        }
    }
    routes
}

fn documented_routes(doc: &Value) -> Routes {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(|k| k.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn the_document_lists_every_registered_route_and_method() {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .expect("src/http/mod.rs");
    let registered = registered_routes(&src);
    assert!(
        registered.len() >= 14 && registered.contains_key("/openapi.json"),
        "the parser found the routes: {registered:?}"
    );
    let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let documented = documented_routes(&doc);
    let mut problems = Vec::new();
    for (path, methods) in &registered {
        match documented.get(path) {
            None => problems.push(format!("{path} is registered but not documented")),
            Some(d) if d != methods => {
                problems.push(format!("{path}: registered {methods:?}, documented {d:?}"))
            }
            Some(_) => {}
        }
    }
    for path in documented.keys().filter(|p| !registered.contains_key(*p)) {
        problems.push(format!("{path} is documented but not registered"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Every operation has a unique id, and every error it documents is the one error body.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: operationId {id:?}"
            );
            for (code, r) in op["responses"].as_object().unwrap() {
                if code.starts_with('4') || code.starts_with('5') {
                    let schema = r["$ref"].as_str().map_or_else(
                        || r["content"]["application/json"]["schema"]["$ref"].clone(),
                        |name| {
                            let name = name.rsplit('/').next().unwrap();
                            doc["components"]["responses"][name]["content"]["application/json"]
                                ["schema"]["$ref"]
                                .clone()
                        },
                    );
                    let ok = schema == "#/components/schemas/Error"
                        || (method == "head" && schema.is_null())
                        || (path == "/readyz" && code == "503");
                    assert!(ok, "{method} {path} {code}: body {schema}");
                }
            }
        }
    }
}

#[tokio::test]
async fn openapi_json_is_served_without_a_token() {
    let app = spawn_app(Options {
        export_token: Some(TOKEN.into()),
        admin_token: Some(TOKEN.into()),
        ..Options::without_publisher()
    })
    .await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), DOCUMENT);
    let r = app
        .http
        .head(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    app.stop().await;
}

/// The installed schemathesis's version.
fn schemathesis_version() -> String {
    let out = std::process::Command::new("schemathesis")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("schemathesis --version");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `schemathesis run <base>/openapi.json` with the checks below and `extra` arguments, in a
/// temporary folder (it looks for a config file there); prints its output (shown on failure or
/// with `--nocapture`) and fails when it finds a problem.
async fn schemathesis(base: &str, max_examples: u32, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let checks = [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        // 405 with `Allow` naming exactly the documented methods.
        "unsupported_method",
        "allow_header_conformance",
    ]
    .join(",");
    let max_examples = max_examples.to_string();
    let mut args = vec![
        "run".to_string(),
        format!("{base}/openapi.json"),
        "--checks".into(),
        checks,
        "--max-examples".into(),
        max_examples,
        "--seed".into(),
        "1".into(),
        // One worker: Python 3.11's `ast.parse` is not thread-safe (CPython gh-106905), and
        // hypothesis parses lambdas while schemathesis's workers generate.
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "20".into(),
        "--generation-database".into(),
        "none".into(),
        "--generation-with-security-parameters".into(),
        "false".into(),
        "--no-color".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let started = Instant::now();
    let run = tokio::process::Command::new("schemathesis")
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("schemathesis finishes within 4 minutes")
        .expect("schemathesis runs");
    let output = format!(
        "schemathesis {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{output}\nschemathesis took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "schemathesis found problems (its output is above)"
    );
}

/// Every route with every guard on (one token for all), a snapshot of two resources with line
/// items, a third resource never polled, and one webhook endpoint: schemathesis then finds no
/// 5xx and no answer that departs from the document (status, content type, headers, body
/// schema, 405 with `Allow`), with the token and without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_bridge_conforms_to_its_openapi_document() {
    if !tool("schemathesis") {
        return;
    }
    let version = schemathesis_version();
    if !version.ends_with(SCHEMATHESIS) {
        eprintln!("note: {version} installed; this test is written for {SCHEMATHESIS}");
    }
    let app = spawn_app(Options {
        export_token: Some(TOKEN.into()),
        admin_token: Some(TOKEN.into()),
        inbound_token: Some(TOKEN.into()),
        // Clients are not polled here: their exports read Daftra live, and an explicit
        // source=snapshot is a 503.
        resources: Some("work_orders,invoices,clients".into()),
        records: 20,
        // Endpoints schemathesis registers must be public https targets; no event is logged, so
        // none is delivered to.
        allow_private: false,
        // schemathesis asks for long waits on GET /events: each holds at most a second.
        extra: vec![("FEED_MAX_WAIT_SECS", "1".into())],
        ..Options::default()
    })
    .await;
    app.poll().await;
    app.poll_resource("invoices").await;

    // A 503 is hard for schemathesis to reach (it polls clients itself): checked here, as
    // documented (`Retry-After`, the error body).
    let r = app
        .http
        .get(format!("{}/exports/clients.csv?source=snapshot", app.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(body["message"].is_string() && body.as_object().unwrap().len() == 2);
    // So is a 304 (schemathesis seldom sends a matching `If-None-Match`): its documented
    // headers, and no body.
    let r = app
        .http
        .get(format!("{}/exports/work_orders.csv", app.base))
        .bearer_auth(TOKEN)
        .header("If-None-Match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["x-data-source"], "snapshot");
    assert!(r.headers()["etag"].to_str().unwrap().starts_with("W/\""));
    assert!(r.headers().contains_key("last-modified"));
    assert!(r.bytes().await.unwrap().is_empty());

    let r = app
        .http
        .post(format!("{}/webhooks/endpoints", app.base))
        .bearer_auth(TOKEN)
        .body(r#"{"url": "https://hooks.example.com/daftra", "events": ["work_order.*"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let auth = format!("Authorization: Bearer {TOKEN}");
    schemathesis(&app.base, 50, &["--header", &auth]).await;
    // Without a token: the guarded routes answer 401 (with `WWW-Authenticate`), the open ones
    // as before.
    schemathesis(
        &app.base,
        5,
        &["--phases", "examples,fuzzing", "--warnings", "off"],
    )
    .await;
    app.stop().await;
}
