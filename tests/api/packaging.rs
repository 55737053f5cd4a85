//! The chart, `.env.example` and the Dockerfile cover every variable of the contract; the alert
//! rules, the dashboard, the Dockerfile and the chart pass promtool, hadolint and helm.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

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
// Monitoring, the Dockerfile and the chart, checked by the real tools (promtool, hadolint, helm).
// Each such test skips with a note when its tool is missing, and fails instead when `CI` is set:
// .ci/run installs them all.

const CHART: &str = "charts/daftra-bridge";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` can be run; without it, a skip note (or a failure under CI).
fn have(tool: &str) -> bool {
    match Command::new(tool)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
            panic!("{tool} is needed under CI (.ci/run installs it): {e}")
        }
        Err(e) => {
            eprintln!("skipped: {tool} is not installed ({e}); .ci/run installs it");
            false
        }
    }
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
    if !have("promtool") {
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
    if !have("promtool") {
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
    if !have("hadolint") {
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
    if !have("helm") {
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

    // One replica is the only valid count today: the chart has no replicaCount and renders one
    // replica whatever is asked (see templates/deployment.yaml).
    for replicas in ["1", "3"] {
        let docs = render(&["--set", &format!("replicaCount={replicas}")]);
        let deployment = &docs.iter().find(|(k, _)| k == "Deployment").unwrap().1;
        assert_eq!(
            deployment["spec"]["replicas"].as_i64(),
            Some(1),
            "replicaCount={replicas}"
        );
        assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    }
}

#[test]
fn the_chart_ships_the_alerts_and_the_dashboard_as_written() {
    if !have("helm") {
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
    // What Helm renders is still a valid rules file.
    if have("promtool") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rendered-alerts.yaml");
        std::fs::write(&path, serde_yaml_ng::to_string(&rule["spec"]).unwrap()).unwrap();
        let checked = run("promtool", &["check", "rules", path.to_str().unwrap()]);
        assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    }

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
}
