//! The chart, `.env.example` and the configuration name every variable of the contract.

use std::path::Path;

use super::read;

/// Every variable the service reads (the configuration's own list, kept equal to its raw
/// environment by a unit test), plus `RUST_LOG`.
fn variables() -> impl Iterator<Item = &'static str> {
    daftra_bridge::config::env::KNOWN
        .iter()
        .copied()
        .chain(["RUST_LOG"])
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
