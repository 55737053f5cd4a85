//! The chart, `.env.example` and the Dockerfile cover every variable of the contract; the alert
//! rules, the dashboard, the Dockerfile and the chart pass promtool, hadolint and helm.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::helpers::tool;

/// Every variable the service reads (the configuration's own list, kept equal to its raw
/// environment by a unit test), plus `RUST_LOG`.
fn variables() -> impl Iterator<Item = &'static str> {
    daftra_bridge::config::env::KNOWN
        .iter()
        .copied()
        .chain(["RUST_LOG"])
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_variable_is_in_the_chart_and_the_env_example() {
    let env_example = read(".env.example");
    let chart = format!(
        "{}{}",
        read("charts/daftra-bridge/values.yaml"),
        read("charts/daftra-bridge/templates/deployment.yaml")
    );
    let mut variables: Vec<String> = variables().map(str::to_string).collect();
    // When the contract sits beside the checkout, take its variables from there too.
    if let Ok(contract) =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/CONTRACT.md"))
    {
        let section = contract
            .split("## 2.")
            .nth(1)
            .and_then(|s| s.split("## 3.").next())
            .unwrap_or("");
        for word in section.split('`') {
            if word.len() > 3
                && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                && !variables.iter().any(|v| v == word)
            {
                variables.push(word.to_string());
            }
        }
    }
    // A contract variable is documented once the code reads it, never before (features still
    // to come are listed in the contract ahead of their code).
    let config = read("src/config/mod.rs").to_ascii_uppercase();
    for v in variables.iter().filter(|v| config.contains(v.as_str())) {
        assert!(env_example.contains(v), ".env.example lacks {v}");
        assert!(chart.contains(v), "the chart lacks {v}");
    }
}

#[test]
fn chart_yaml_and_values_parse_and_hold_the_promised_settings() {
    let chart: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("charts/daftra-bridge/Chart.yaml")).unwrap();
    assert_eq!(chart["name"].as_str(), Some("daftra-bridge"));
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    let values: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("charts/daftra-bridge/values.yaml")).unwrap();
    assert!(values["config"].is_mapping());
    assert_eq!(
        values["serviceMonitor"]["enabled"].as_bool(),
        Some(false),
        "ServiceMonitor off by default"
    );
    let grace = values["terminationGracePeriodSeconds"].as_i64().unwrap();
    let shutdown: i64 = values["config"]["SHUTDOWN_DEADLINE_SECS"]
        .as_str()
        .unwrap_or("20")
        .parse()
        .unwrap_or(20);
    assert!(
        grace > shutdown,
        "grace period {grace}s exceeds the shutdown deadline {shutdown}s"
    );
    let deployment = read("charts/daftra-bridge/templates/deployment.yaml");
    for needle in [
        "Recreate",
        "readinessProbe",
        "livenessProbe",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "name: http",
    ] {
        assert!(
            deployment.contains(needle)
                || read("charts/daftra-bridge/values.yaml").contains(needle),
            "chart lacks {needle}"
        );
    }
    assert_eq!(
        values["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        values["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        values["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("http")
    );
}

#[test]
fn the_dockerfile_runs_as_a_fixed_non_root_user_with_a_data_volume() {
    let dockerfile = read("Dockerfile");
    for needle in [
        "USER 10001",
        "VOLUME [\"/data\"]",
        "EXPOSE 8080",
        "ca-certificates",
        "org.opencontainers.image.title",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle}");
    }
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let config = read("src/config/mod.rs");
    let raw_env = config
        .split("pub struct RawEnv")
        .nth(1)
        .and_then(|s| s.split('}').next())
        .unwrap();
    let env_example = read(".env.example");
    let values = read("charts/daftra-bridge/values.yaml");
    let mut count = 0;
    let mut skip = false;
    for line in raw_env.lines() {
        // `#[serde(skip)]` fields are not variables of their own (the per-resource intervals).
        if line.trim() == "#[serde(skip)]" {
            skip = true;
            continue;
        }
        if std::mem::take(&mut skip) {
            continue;
        }
        let Some(field) = line
            .trim()
            .strip_prefix("pub ")
            .and_then(|l| l.split(':').next())
        else {
            continue;
        };
        let name = field.to_ascii_uppercase();
        assert!(env_example.contains(&name), ".env.example lacks {name}");
        assert!(values.contains(&name), "values.yaml lacks {name}");
        count += 1;
    }
    assert!(count >= 20, "read the RawEnv fields ({count})");
}

#[test]
fn every_cargo_target_names_its_path_for_the_docker_dependency_layer() {
    // The Dockerfile builds dependencies against placeholder files made from the `path = ` lines.
    let manifest = read("Cargo.toml");
    for block in manifest.split("[[").skip(1) {
        let block = block.split("\n[").next().unwrap();
        assert!(
            block.contains("path = "),
            "a target without an explicit path: [[{block}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Monitoring, the Dockerfile and the chart, checked by the real tools (promtool, hadolint, helm),
// under `helpers::tool`'s rule: .ci/run installs them all.

const CHART: &str = "charts/daftra-bridge";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tool args` in the repository root and returns its standard output; fails on a non-zero
/// exit, showing both outputs.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{tool} {}: {}\n{stdout}\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

/// Metric names `src/metrics.rs` registers, and which of them are histograms (their series are
/// `_bucket`, `_count` and `_sum`).
fn registered_metrics() -> (BTreeSet<String>, BTreeSet<String>) {
    let src = read("src/metrics.rs");
    let is_name = |s: &str| {
        (s.starts_with("bridge_") || s.starts_with("daftra_api_"))
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let literals = |text: &str| -> Vec<String> {
        text.split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let names: BTreeSet<String> = literals(&src).into_iter().filter(|s| is_name(s)).collect();
    // The first metric-like literal after each `histogram(` call (or `HistogramOpts::new(`).
    let mut histograms = BTreeSet::new();
    for marker in ["histogram(", "HistogramOpts::new("] {
        for segment in src.split(marker).skip(1) {
            if let Some(name) = literals(segment).into_iter().find(|s| is_name(s)) {
                histograms.insert(name);
            }
        }
    }
    assert!(
        names.len() >= 20,
        "metric names read from src/metrics.rs: {names:?}"
    );
    assert!(
        histograms.contains("daftra_api_request_duration_seconds"),
        "histograms read from src/metrics.rs: {histograms:?}"
    );
    (names, histograms)
}

/// The metric names a PromQL expression selects: identifiers outside quoted label values with
/// the bridge's prefixes (or `process_`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut unquoted = String::new();
    let mut quoted = false;
    for c in expr.chars() {
        if c == '"' {
            quoted = !quoted;
            unquoted.push(' ');
        } else if !quoted {
            unquoted.push(c);
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            t.starts_with("bridge_") || t.starts_with("daftra_api_") || t.starts_with("process_")
        })
        .map(str::to_string)
        .collect()
}

/// Whether `name` is a series of a registered metric (a histogram's `_bucket`/`_count`/`_sum`).
fn is_registered(name: &str, names: &BTreeSet<String>, histograms: &BTreeSet<String>) -> bool {
    names.contains(name)
        || ["_bucket", "_count", "_sum"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| histograms.contains(base))
        })
}

/// Every `expr` of a rules file's groups, by alert name.
fn rule_exprs(rules: &serde_yaml_ng::Value) -> Vec<(String, String)> {
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

/// Every string under the key `key` anywhere in `v`.
fn strings_under<'a>(v: &'a serde_json::Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::String(s) if k == key => out.push(s),
                    _ => strings_under(x, key, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_under(x, key, out)),
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(&format!("{CHART}/files/dashboard.json")))
        .expect("files/dashboard.json is JSON")
}

fn alert_rules() -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(&format!("{CHART}/files/alerts.yaml")))
        .expect("files/alerts.yaml is YAML")
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    if !tool("promtool") {
        return;
    }
    let checked = run(
        "promtool",
        &["check", "rules", &format!("{CHART}/files/alerts.yaml")],
    );
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    // promtool reads the test's rule_files relative to the test file.
    let tested = run(
        "promtool",
        &["test", "rules", &format!("{CHART}/files/alerts_test.yaml")],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_summary_a_runbook_a_severity_a_wait_and_unit_tests() {
    let rules = alert_rules();
    let tests = read(&format!("{CHART}/files/alerts_test.yaml"));
    let mut alerts = Vec::new();
    for rule in rules["groups"][0]["rules"].as_sequence().expect("rules") {
        let alert = rule["alert"]
            .as_str()
            .expect("an alerting rule")
            .to_string();
        for annotation in ["summary", "runbook"] {
            assert!(
                rule["annotations"][annotation]
                    .as_str()
                    .is_some_and(|s| s.len() > 20),
                "{alert} lacks its {annotation} annotation"
            );
        }
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{alert}: severity"
        );
        assert!(rule["for"].as_str().is_some(), "{alert}: `for:`");
        // A case where it fires and one where it does not.
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(cases >= 2, "{alert} has {cases} promtool test cases");
        alerts.push(alert);
    }
    assert_eq!(
        alerts,
        [
            "DaftraBridgePollStale",
            "DaftraBridgeOutboxGrowing",
            "DaftraBridgeBrokerUnavailable",
            "DaftraBridgeIncompleteScans",
            "DaftraBridgeEventsUnroutable",
            "DaftraBridgeResourceUnavailable",
            "DaftraBridgeWebhookEndpointDisabled",
            "DaftraBridgeWebhookBacklog",
        ]
    );
}

#[test]
fn the_alerts_and_the_dashboard_query_only_metrics_of_src_metrics_rs() {
    let (names, histograms) = registered_metrics();
    // The process collector registered in src/metrics.rs adds these (the alerts use its start
    // time); the dashboard sticks to the bridge's own metrics.
    assert!(read("src/metrics.rs").contains("ProcessCollector"));
    let process = ["process_start_time_seconds"];
    for (alert, expr) in rule_exprs(&alert_rules()) {
        let used = metrics_in(&expr);
        assert!(!used.is_empty(), "{alert} queries no bridge metric: {expr}");
        for m in used {
            assert!(
                is_registered(&m, &names, &histograms) || process.contains(&m.as_str()),
                "{alert} queries {m}, which src/metrics.rs does not register"
            );
        }
    }

    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "daftra-bridge");
    let mut exprs = Vec::new();
    strings_under(&dashboard, "expr", &mut exprs);
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let metrics = metrics_in(expr);
        assert!(
            !metrics.is_empty(),
            "a panel queries no bridge metric: {expr}"
        );
        used.extend(metrics);
    }
    let mut variables = Vec::new();
    strings_under(&dashboard["templating"], "definition", &mut variables);
    for v in variables {
        used.extend(metrics_in(v));
    }
    for m in &used {
        assert!(
            is_registered(m, &names, &histograms),
            "the dashboard queries {m}, which src/metrics.rs does not register"
        );
    }
    // The panels the dashboard promises.
    for m in [
        "daftra_api_request_duration_seconds_bucket",
        "daftra_api_pages_fetched_total",
        "bridge_poll_last_success_timestamp_seconds",
        "bridge_changes_detected_total",
        "bridge_outbox_pending",
        "bridge_events_published_total",
        "bridge_publish_failures_total",
        "bridge_events_unroutable_total",
        "bridge_export_rows_total",
        "bridge_export_duration_seconds_bucket",
        "bridge_webhook_deliveries_total",
        "bridge_webhook_attempt_duration_seconds_bucket",
        "bridge_webhook_pending",
        "bridge_webhook_endpoint_disabled",
    ] {
        assert!(used.contains(m), "the dashboard has no panel on {m}");
    }
    assert!(exprs.iter().any(|e| e.contains("histogram_quantile(0.95")
        && e.contains("daftra_api_request_duration_seconds_bucket")));
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            panel["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    if !tool("promtool") {
        return;
    }
    // Each query as a recording rule, with Grafana's variables replaced by what they stand for.
    let mut rules = Vec::new();
    let dashboard = dashboard();
    let mut exprs = Vec::new();
    strings_under(&dashboard, "expr", &mut exprs);
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "2m")
            .replace("$job", ".*")
            .replace("$resource", ".*");
        rules.push(serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}));
    }
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&file).unwrap()).unwrap();
    let checked = run("promtool", &["check", "rules", path.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

#[test]
fn the_dockerfile_is_clean_under_hadolint() {
    if !tool("hadolint") {
        return;
    }
    // Findings are fixed, or ignored inline with the reason next to the `hadolint ignore`.
    let report = run("hadolint", &["--no-color", "Dockerfile"]);
    assert!(report.trim().is_empty(), "hadolint Dockerfile: {report}");
}

#[test]
fn the_dockerfile_builds_stripped_binaries_without_debug_info() {
    let dockerfile = read("Dockerfile");
    // Instructions with their continuation lines joined, comments left out.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if current.is_empty() && line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    instructions.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    let settings = [
        "CARGO_PROFILE_RELEASE_DEBUG=0",
        "CARGO_PROFILE_RELEASE_STRIP=symbols",
    ];
    let builder: Vec<&String> = instructions
        .iter()
        .skip_while(|i| !i.starts_with("FROM "))
        .skip(1)
        .take_while(|i| !i.starts_with("FROM "))
        .collect();
    let mut env = String::new();
    let mut builds = 0;
    for i in builder {
        if i.starts_with("ENV ") || i.starts_with("ARG ") {
            env.push_str(i);
        }
        if i.starts_with("RUN ") && i.contains("cargo build") {
            builds += 1;
            for s in settings {
                assert!(
                    env.contains(s) || i.contains(s),
                    "a cargo build of the image runs without {s}: {i}"
                );
            }
        }
    }
    // The dependency layer and the real build: the same profile, so the cached layer matches.
    assert_eq!(builds, 2, "the builder stage's cargo builds");
    // Cargo.toml keeps its debug info for profiling outside the image.
    let manifest = read("Cargo.toml");
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .unwrap_or_default();
    assert!(
        release
            .split("\n[")
            .next()
            .unwrap_or_default()
            .contains("debug = 1"),
        "[profile.release] keeps debug = 1"
    );
}

/// `helm template` of the chart with `args`, as (kind, document) pairs.
fn render(args: &[&str]) -> Vec<(String, serde_yaml_ng::Value)> {
    use serde::Deserialize;
    let mut all = vec!["template", "test", CHART];
    all.extend_from_slice(args);
    let out = run("helm", &all);
    serde_yaml_ng::Deserializer::from_str(&out)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).expect("helm renders YAML"))
        .filter(|doc| !doc.is_null())
        .map(|doc| (doc["kind"].as_str().expect("kind").to_string(), doc))
        .collect()
}

fn kinds(docs: &[(String, serde_yaml_ng::Value)]) -> BTreeSet<String> {
    docs.iter().map(|(k, _)| k.clone()).collect()
}

#[test]
fn the_chart_lints_and_renders_with_each_option_on_and_off() {
    if !tool("helm") {
        return;
    }
    let all_on = [
        "--set",
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
    ];
    run("helm", &["lint", "--strict", CHART]);
    let mut lint_all = vec!["lint", "--strict", CHART];
    lint_all.extend_from_slice(&all_on);
    run("helm", &lint_all);

    let base: BTreeSet<String> = ["Deployment", "PersistentVolumeClaim", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&render(&[])), base, "the defaults");
    for (option, kind) in [
        ("serviceMonitor.enabled", "ServiceMonitor"),
        ("prometheusRule.enabled", "PrometheusRule"),
        ("grafanaDashboard.enabled", "ConfigMap"),
    ] {
        let on = kinds(&render(&["--set", &format!("{option}=true")]));
        let mut expected = base.clone();
        expected.insert(kind.to_string());
        assert_eq!(on, expected, "{option}=true");
        let off = kinds(&render(&["--set", &format!("{option}=false")]));
        assert_eq!(off, base, "{option}=false");
    }
    let everything = kinds(&render(&all_on));
    assert_eq!(everything.len(), base.len() + 3, "{everything:?}");

    // On SQLite (the default) replicaCount is 0 or 1, replaced with Recreate and without a
    // PodDisruptionBudget; more replicas need PostgreSQL (the tests below).
    for replicas in [0, 1] {
        let docs = render(&["--set", &format!("replicaCount={replicas}")]);
        assert_eq!(kinds(&docs), base, "replicaCount={replicas}");
        let deployment = only(&docs, "Deployment");
        assert_eq!(
            deployment["spec"]["replicas"].as_i64(),
            Some(replicas),
            "replicaCount={replicas}"
        );
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    }
    // PostgreSQL, from the chart's Secret or an existing one, with every option on.
    for database in [
        "database.url=postgres://u:p@db:5432/x",
        "database.existingSecret=bridge-database",
    ] {
        let mut lint = vec![
            "lint",
            "--strict",
            CHART,
            "--set",
            "replicaCount=3",
            "--set",
            database,
        ];
        lint.extend_from_slice(&all_on);
        run("helm", &lint);
        let docs = render(&["--set", "replicaCount=3", "--set", database]);
        let mut expected = base.clone();
        expected.remove("PersistentVolumeClaim");
        expected.insert("PodDisruptionBudget".to_string());
        assert_eq!(kinds(&docs), expected, "{database}");
    }
}

/// `helm template` of the chart with `args`, which must fail: its error output.
fn render_error(args: &[&str]) -> String {
    let mut all = vec!["template", "test", CHART];
    all.extend_from_slice(args);
    let out = Command::new("helm")
        .args(&all)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("helm: {e}"));
    assert!(
        !out.status.success(),
        "helm {} rendered instead of failing:\n{}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one rendered document of `kind`.
fn only<'a>(docs: &'a [(String, serde_yaml_ng::Value)], kind: &str) -> &'a serde_yaml_ng::Value {
    let mut found = docs.iter().filter(|(k, _)| k == kind).map(|(_, doc)| doc);
    let doc = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} among {:?}", kinds(docs)));
    assert!(found.next().is_none(), "more than one {kind}");
    doc
}

/// The Deployment's only container.
fn bridge_container(docs: &[(String, serde_yaml_ng::Value)]) -> &serde_yaml_ng::Value {
    let containers = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    &containers[0]
}

/// The container's `env` entry named `name`, which must be there exactly once.
fn env_var<'a>(docs: &'a [(String, serde_yaml_ng::Value)], name: &str) -> &'a serde_yaml_ng::Value {
    let env = bridge_container(docs)["env"].as_sequence().expect("env");
    let named: Vec<&serde_yaml_ng::Value> = env.iter().filter(|e| e["name"] == name).collect();
    assert_eq!(named.len(), 1, "env {name}: {named:?}");
    named[0]
}

/// What the probes check, the pod's volumes and where they are mounted: the same in both modes
/// but for /data, the SQLite volume (`data`: its source as YAML, None on PostgreSQL).
fn check_pod(docs: &[(String, serde_yaml_ng::Value)], data: Option<&str>) {
    let container = bridge_container(docs);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
    let mounts: Vec<(&str, &str)> = container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    let volumes = only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes");
    let names: Vec<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let tmp = volumes
        .iter()
        .find(|v| v["name"] == "tmp")
        .expect("the tmp volume");
    assert_eq!(tmp["emptyDir"]["sizeLimit"], "512Mi");
    match data {
        Some(source) => {
            assert_eq!(mounts, [("data", "/data"), ("tmp", "/tmp")]);
            assert_eq!(names, ["data", "tmp"]);
            let volume = volumes.iter().find(|v| v["name"] == "data").unwrap();
            let expected: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&format!("{{name: data, {source}}}")).unwrap();
            assert_eq!(volume, &expected);
        }
        None => {
            assert_eq!(mounts, [("tmp", "/tmp")]);
            assert_eq!(names, ["tmp"]);
        }
    }
}

/// The PodDisruptionBudget of several replicas: at least one up, selecting the Deployment's pods.
fn check_disruption_budget(docs: &[(String, serde_yaml_ng::Value)]) {
    let pdb = only(docs, "PodDisruptionBudget");
    let deployment = only(docs, "Deployment");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["metadata"]["name"], "test-daftra-bridge");
    assert_eq!(pdb["spec"]["minAvailable"].as_i64(), Some(1), "{pdb:?}");
    assert!(pdb["spec"]["maxUnavailable"].is_null(), "{pdb:?}");
    let selector = &pdb["spec"]["selector"]["matchLabels"];
    assert_eq!(selector, &deployment["spec"]["selector"]["matchLabels"]);
    let selector = selector.as_mapping().expect("matchLabels");
    assert!(selector.len() >= 2, "{selector:?}");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in selector.iter() {
        assert_eq!(
            &pod_labels[key.as_str().unwrap()],
            value,
            "pod label {key:?}"
        );
    }
}

/// The Deployment of PostgreSQL mode: `replicas`, rolled one pod at a time.
fn check_rolling(docs: &[(String, serde_yaml_ng::Value)], replicas: i64) {
    let spec = &only(docs, "Deployment")["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(replicas));
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxSurge"].as_i64(),
        Some(1)
    );
}

/// Every rendered document as YAML text, but those of `except` kind.
fn rendered_text(docs: &[(String, serde_yaml_ng::Value)], except: &str) -> String {
    docs.iter()
        .filter(|(kind, _)| kind != except)
        .map(|(_, doc)| serde_yaml_ng::to_string(doc).unwrap())
        .collect()
}

#[test]
fn the_chart_refuses_several_replicas_on_sqlite() {
    if !tool("helm") {
        return;
    }
    for args in [
        vec!["--set", "replicaCount=3"],
        vec!["--set", "replicaCount=3,persistence.enabled=false"],
        vec!["--set", "replicaCount=3,persistence.existingClaim=shared"],
        vec![
            "--set",
            "replicaCount=3,config.DATABASE_URL=sqlite:///data/other.sqlite3",
        ],
        vec!["--set", "replicaCount=3,config.DATABASE_URL="],
    ] {
        let message = render_error(&args);
        assert!(
            message.contains("replicaCount=3") && message.contains("PostgreSQL"),
            "{args:?}: {message}"
        );
        assert!(
            message.contains("database.url") && message.contains("database.existingSecret"),
            "{args:?} says how to get PostgreSQL: {message}"
        );
    }
    let message = render_error(&["--set", "replicaCount=2"]);
    assert!(message.contains("replicaCount=2"), "{message}");
    for bad in ["-1", "1.5", "two"] {
        let message = render_error(&["--set", &format!("replicaCount={bad}")]);
        assert!(
            message.contains("replicaCount must be a whole number"),
            "replicaCount={bad}: {message}"
        );
    }
}

#[test]
fn the_chart_keeps_a_postgresql_url_out_of_plain_config() {
    if !tool("helm") {
        return;
    }
    // `config` is rendered as plain environment variables: a PostgreSQL URL (its password) or any
    // URL with credentials is refused there, without the error repeating it.
    for url in [
        "postgres://u:p@db:5432/x",
        "postgresql://u:p@db:5432/x",
        "POSTGRES://u:p@db:5432/x",
        "postgres://db:5432/x",
    ] {
        for extra in ["", ",database.existingSecret=bridge-database"] {
            let message = render_error(&["--set", &format!("config.DATABASE_URL={url}{extra}")]);
            assert!(
                message.contains("config.DATABASE_URL is a PostgreSQL URL")
                    && message.contains("database.url")
                    && message.contains("database.existingSecret"),
                "{url}{extra}: {message}"
            );
            assert!(!message.contains(url), "the error repeats {url}: {message}");
        }
    }
    let message = render_error(&["--set", "config.DATABASE_URL=mysql://u:p@db/x"]);
    assert!(
        message.contains("config.DATABASE_URL holds credentials"),
        "{message}"
    );
    assert!(!message.contains("u:p@"), "{message}");
    // database.url is for PostgreSQL only, and one source at a time.
    let message = render_error(&["--set", "database.url=sqlite:///data/x.sqlite3"]);
    assert!(
        message.contains("database.url must be a postgres:// or postgresql:// URL"),
        "{message}"
    );
    let message = render_error(&[
        "--set",
        "database.url=postgres://u:p@db:5432/x,database.existingSecret=bridge-database",
    ]);
    assert!(
        message.contains("set database.url or database.existingSecret, not both"),
        "{message}"
    );
    // With the top-level existingSecret the chart makes no Secret to hold database.url.
    let message = render_error(&[
        "--set",
        "database.url=postgres://u:p@db:5432/x,existingSecret=bridge-secrets",
    ]);
    assert!(
        message.contains("database.existingSecret=bridge-secrets"),
        "{message}"
    );
    let message = render_error(&["--set", "secrets.DATABASE_URL=postgres://u:p@db:5432/x"]);
    assert!(message.contains("set database.url"), "{message}");
    assert!(!message.contains("u:p@"), "{message}");
}

#[test]
fn the_chart_runs_several_replicas_on_postgresql_from_an_existing_secret() {
    if !tool("helm") {
        return;
    }
    let docs = render(&[
        "--set",
        "replicaCount=3,database.existingSecret=bridge-database",
    ]);
    let expected: BTreeSet<String> = ["Deployment", "PodDisruptionBudget", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected, "no PersistentVolumeClaim");
    check_rolling(&docs, 3);
    check_disruption_budget(&docs);
    check_pod(&docs, None);
    let database = env_var(&docs, "DATABASE_URL");
    assert!(database["value"].is_null(), "{database:?}");
    let reference = &database["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "bridge-database");
    assert_eq!(reference["key"], "DATABASE_URL");
    // Not optional: without the key the pod does not start on the image's SQLite default.
    assert!(reference["optional"].is_null(), "{reference:?}");
    // Followers name the leader by its pod IP.
    assert_eq!(
        env_var(&docs, "POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        env_var(&docs, "ADVERTISE_URL")["value"],
        "http://$(POD_IP):8080"
    );
    // The chart's own Secret still holds the other secrets, not the database URL.
    let secret = only(&docs, "Secret");
    assert!(secret["data"]["DATABASE_URL"].is_null(), "{secret:?}");
    let text = rendered_text(&docs, "").to_ascii_lowercase();
    assert!(!text.contains("postgres"), "{text}");
    assert!(
        !text.contains("sqlite"),
        "config.DATABASE_URL is not rendered: {text}"
    );
    assert!(
        only(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
            ["checksum/database"]
            .is_null()
    );

    // The key in that Secret is configurable; it may be the Secret of the other secrets too.
    let docs = render(&[
        "--set",
        "replicaCount=2,existingSecret=bridge-secrets",
        "--set",
        "database.existingSecret=bridge-secrets,database.existingSecretKey=PG_URL",
    ]);
    let expected: BTreeSet<String> = ["Deployment", "PodDisruptionBudget", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected);
    check_rolling(&docs, 2);
    check_disruption_budget(&docs);
    let reference = &env_var(&docs, "DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "bridge-secrets");
    assert_eq!(reference["key"], "PG_URL");
    assert_eq!(
        env_var(&docs, "AMQP_URL")["valueFrom"]["secretKeyRef"]["name"],
        "bridge-secrets"
    );
}

#[test]
fn the_chart_keeps_the_postgresql_url_only_in_its_secret() {
    use base64::Engine as _;
    if !tool("helm") {
        return;
    }
    let url = "postgres://u:p@db:5432/x";
    let docs = render(&["--set", &format!("replicaCount=2,database.url={url}")]);
    let expected: BTreeSet<String> = ["Deployment", "PodDisruptionBudget", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected, "no PersistentVolumeClaim");
    check_rolling(&docs, 2);
    check_disruption_budget(&docs);
    check_pod(&docs, None);
    // In the chart's Secret, base64-encoded under data (no stringData).
    let secret = only(&docs, "Secret");
    assert_eq!(secret["metadata"]["name"], "test-daftra-bridge");
    assert!(secret["stringData"].is_null(), "{secret:?}");
    let encoded = secret["data"]["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL in the Secret's data");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    assert_eq!(String::from_utf8(decoded).unwrap(), url);
    // Taken from there by the pods; nowhere else in plain text (nor base64).
    let database = env_var(&docs, "DATABASE_URL");
    assert!(database["value"].is_null(), "{database:?}");
    let reference = &database["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], "test-daftra-bridge");
    assert_eq!(reference["key"], "DATABASE_URL");
    assert!(reference["optional"].is_null(), "{reference:?}");
    let text = rendered_text(&docs, "Secret");
    for needle in ["postgres", "u:p@", encoded] {
        assert!(
            !text.contains(needle),
            "{needle} outside the Secret: {text}"
        );
    }
    // A new URL rolls the pods.
    let annotations = &only(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"];
    let checksum = annotations["checksum/database"]
        .as_str()
        .expect("checksum/database");
    assert_eq!(checksum.len(), 64, "a sha256: {checksum}");
    let changed = render(&[
        "--set",
        "replicaCount=2,database.url=postgres://u:q@db:5432/x",
    ]);
    let other = only(&changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        ["checksum/database"]
        .as_str()
        .expect("checksum/database");
    assert_ne!(other, checksum);

    // One replica on PostgreSQL: still rolled and without a volume, but no disruption budget
    // (minAvailable 1 of 1 would block every node drain).
    let docs = render(&["--set", &format!("database.url={url}")]);
    let expected: BTreeSet<String> = ["Deployment", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected);
    check_rolling(&docs, 1);
    check_pod(&docs, None);
    assert!(!rendered_text(&docs, "Secret").contains("postgres"));
}

#[test]
fn the_default_chart_is_one_sqlite_pod_on_its_volume() {
    if !tool("helm") {
        return;
    }
    let docs = render(&[]);
    let expected: BTreeSet<String> = ["Deployment", "PersistentVolumeClaim", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected, "a PVC and no PodDisruptionBudget");
    let deployment = only(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(1));
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert!(deployment["spec"]["strategy"]["rollingUpdate"].is_null());
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["checksum/database"].is_null()
    );
    let pvc = only(&docs, "PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], "test-daftra-bridge");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
    check_pod(
        &docs,
        Some("persistentVolumeClaim: {claimName: test-daftra-bridge}"),
    );
    // The SQLite URL stays plain configuration (it holds no password).
    let database = env_var(&docs, "DATABASE_URL");
    assert_eq!(database["value"], "sqlite:///data/daftra-bridge.sqlite3");
    assert!(database["valueFrom"].is_null(), "{database:?}");
    assert!(only(&docs, "Secret")["data"]["DATABASE_URL"].is_null());

    // Without persistence: an emptyDir at /data, still one pod replaced with Recreate.
    let docs = render(&["--set", "persistence.enabled=false"]);
    let expected: BTreeSet<String> = ["Deployment", "Secret", "Service"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds(&docs), expected);
    assert_eq!(
        only(&docs, "Deployment")["spec"]["strategy"]["type"],
        "Recreate"
    );
    check_pod(&docs, Some("emptyDir: {}"));
}

#[test]
fn the_chart_ships_the_alerts_and_the_dashboard_as_written() {
    if !tool("helm") {
        return;
    }
    // The PrometheusRule: the groups of files/alerts.yaml, the poll interval scaled, the
    // annotations' `{{ $labels }}` untouched by Helm.
    let docs = render(&[
        "--set",
        "prometheusRule.enabled=true,prometheusRule.pollIntervalSeconds=300",
        "--set",
        "prometheusRule.additionalLabels.release=kube-prometheus-stack",
        "--set",
        "prometheusRule.ruleLabels.team=integrations",
    ]);
    let rule = &docs.iter().find(|(k, _)| k == "PrometheusRule").unwrap().1;
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let file = alert_rules();
    let shipped = &rule["spec"]["groups"][0]["rules"];
    let written = &file["groups"][0]["rules"];
    assert_eq!(rule["spec"]["groups"][0]["name"], file["groups"][0]["name"]);
    let (shipped, written) = (
        shipped.as_sequence().unwrap(),
        written.as_sequence().unwrap(),
    );
    assert_eq!(shipped.len(), written.len());
    for (s, w) in shipped.iter().zip(written) {
        let alert = w["alert"].as_str().unwrap();
        assert_eq!(s["alert"], w["alert"]);
        assert_eq!(s["for"], w["for"], "{alert}");
        assert_eq!(s["annotations"], w["annotations"], "{alert}");
        assert_eq!(s["labels"]["severity"], w["labels"]["severity"], "{alert}");
        assert_eq!(s["labels"]["team"], "integrations", "{alert}");
        let expected = w["expr"]
            .as_str()
            .unwrap()
            .replace("3 * 60", "3 * 300")
            .replace("[240s]", "[1200s]");
        assert_eq!(s["expr"].as_str(), Some(expected.as_str()), "{alert}");
    }
    let exprs = rule_exprs(&rule["spec"]);
    assert!(exprs.iter().any(|(_, e)| e.contains("> 3 * 300")));
    assert!(exprs.iter().any(|(_, e)| e.contains("[1200s]")));
    assert!(shipped.iter().any(|r| r["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("{{ $labels.resource }}")));
    // Without pollIntervalSeconds the interval is config.POLL_INTERVAL_SECS.
    let docs = render(&[
        "--set",
        "prometheusRule.enabled=true,config.POLL_INTERVAL_SECS=120",
    ]);
    let rule = &docs.iter().find(|(k, _)| k == "PrometheusRule").unwrap().1;
    let exprs = rule_exprs(&rule["spec"]);
    assert!(
        exprs.iter().any(|(_, e)| e.contains("> 3 * 120")),
        "{exprs:?}"
    );
    assert!(exprs.iter().any(|(_, e)| e.contains("[480s]")), "{exprs:?}");
    let rendered_rules = rule["spec"].clone();

    // The dashboard ConfigMap: the sidecar's label (configurable) and the JSON as written.
    let docs = render(&["--set", "grafanaDashboard.enabled=true"]);
    let map = &docs.iter().find(|(k, _)| k == "ConfigMap").unwrap().1;
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value =
        serde_json::from_str(map["data"]["daftra-bridge.json"].as_str().unwrap()).unwrap();
    assert_eq!(json, dashboard());
    let docs = render(&[
        "--set",
        "grafanaDashboard.enabled=true,grafanaDashboard.label=dashboards,grafanaDashboard.labelValue=daftra",
    ]);
    let map = &docs.iter().find(|(k, _)| k == "ConfigMap").unwrap().1;
    assert_eq!(map["metadata"]["labels"]["dashboards"], "daftra");
    assert!(map["metadata"]["labels"]["grafana_dashboard"].is_null());

    // What Helm renders is still a valid rules file.
    if !tool("promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rendered-alerts.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&rendered_rules).unwrap()).unwrap();
    let checked = run("promtool", &["check", "rules", path.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
}
