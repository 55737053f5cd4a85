//! The chart, `.env.example` and the Dockerfile cover every variable of the contract.

use std::path::Path;

/// CONTRACT section 2, plus the variables this service adds.
const VARIABLES: &[&str] = &[
    "DAFTRA_BASE_URL",
    "DAFTRA_SUBDOMAIN",
    "DAFTRA_API_KEY",
    "DAFTRA_CLIENT_ID",
    "DAFTRA_CLIENT_SECRET",
    "DAFTRA_USERNAME",
    "DAFTRA_PASSWORD",
    "DAFTRA_PAGE_SIZE",
    "DAFTRA_CONCURRENCY",
    "DAFTRA_TIMEOUT_SECS",
    "DAFTRA_MAX_RETRIES",
    "POLL_INTERVAL_SECS",
    "POLL_EMIT_INITIAL",
    "DATABASE_URL",
    "AMQP_URL",
    "AMQP_EXCHANGE",
    "BIND_ADDR",
    "EXPORT_TOKEN",
    "RUST_LOG",
    "LOG_FORMAT",
    "POLL_DEADLINE_SECS",
    "SHUTDOWN_DEADLINE_SECS",
    "EXPORT_MAX_XLSX_BUILDS",
    "PUBLISH_CONFIRM_TIMEOUT_SECS",
    "DAFTRA_MAX_BACKOFF_SECS",
];

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
    let mut variables: Vec<String> = VARIABLES.iter().map(|v| v.to_string()).collect();
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
