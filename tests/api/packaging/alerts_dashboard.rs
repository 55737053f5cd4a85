//! The alert rules and the Grafana dashboard: every query names a metric `src/metrics.rs`
//! registers, promtool checks and unit-tests them, and the chart ships them as written.

use std::collections::BTreeSet;

use crate::helpers::tool;

use super::chart::render;
use super::{read, run, CHART};

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
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
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
            "DaftraBridgeEventsParked",
            "DaftraBridgeIncrementalMissed",
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
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
}
