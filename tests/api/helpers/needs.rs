//! The one rule for a test that needs a tool or a property of the machine: under `CI` (set, not
//! empty) a missing one fails the test; elsewhere the test prints one `skipped:` line and returns.

use std::process::{Command, Stdio};

/// `true` when `ok`. Otherwise, under `CI`: a panic naming `missing` and `remedy`; elsewhere:
/// one `skipped: {missing}; {remedy}` line on standard error, and `false` (the caller returns).
pub fn require(ok: bool, missing: &str, remedy: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{missing}; {remedy} (CI is set: nothing may be skipped)");
    }
    eprintln!("skipped: {missing}; {remedy}");
    false
}

/// [`require`] that `program --help` runs and succeeds ("`program` is not installed; .ci/run
/// installs it").
pub fn tool(program: &str) -> bool {
    let runs = Command::new(program)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        runs,
        &format!("{program} is not installed"),
        ".ci/run installs it",
    )
}

/// [`require`] that `python3` imports `module` ("python3 cannot import `module`; .ci/run
/// installs it").
pub fn python_module(module: &str) -> bool {
    let imports = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        imports,
        &format!("python3 cannot import {module}"),
        &format!(".ci/run installs it (pip install {module})"),
    )
}
