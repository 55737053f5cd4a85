//! Packaging: the variables every deployment document names ([`variables`]), the Dockerfile
//! ([`docker`]), the Helm chart ([`chart`]) and the alert rules and dashboard it ships
//! ([`alerts_dashboard`]), checked by reading them and by the real tools (promtool, hadolint,
//! helm) under `helpers::tool`'s rule: .ci/run installs them all.

mod alerts_dashboard;
mod chart;
mod docker;
mod variables;

use std::path::Path;
use std::process::{Command, Stdio};

/// The chart's folder under the repository root.
const CHART: &str = "charts/daftra-bridge";

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The text of the file at `path` under the repository root; panics naming it.
fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
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
