//! The Helm chart: its values, `helm lint` and `helm template` with each option, one SQLite pod
//! or several replicas on PostgreSQL, and where the database URL may and may not appear.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use crate::helpers::tool;

use super::{read, root, run, CHART};

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

/// `helm template` of the chart with `args`, as (kind, document) pairs.
pub(super) fn render(args: &[&str]) -> Vec<(String, serde_yaml_ng::Value)> {
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
