//! The Dockerfile: a fixed non-root user, a data volume, stripped binaries, clean under hadolint.

use crate::helpers::tool;

use super::{read, run};

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
