//! The rules that keep the frame straight (ARCHITECTURE.md), checked on the source text: no
//! import cycle between the modules of `src/`, no SQL outside `store/`, no Prometheus label
//! handling outside the metrics module, and no function over 80 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` with its text, comments and string literals left in.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    assert!(out.len() > 40, "read {} source files", out.len());
    out
}

/// The path below `src/`, with `/` separators.
fn relative(path: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    path.strip_prefix(&src)
        .unwrap()
        .to_string_lossy()
        .replace('\\', "/")
}

/// The code of a line without its `//` comment (a `//` inside a string literal is rare enough
/// here to be ignored: no rule below is about string contents after a `//`).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// The top-level module a file belongs to (`store` for `store/sqlite/mod.rs`).
fn top_module(rel: &str) -> &str {
    let first = rel.split('/').next().unwrap();
    first.strip_suffix(".rs").unwrap_or(first)
}

#[test]
fn the_modules_of_src_import_each_other_without_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in sources() {
        let rel = relative(&path);
        let from = top_module(&rel).to_string();
        if ["lib", "main", "bin"].contains(&from.as_str()) {
            continue;
        }
        for line in text.lines().map(code) {
            assert!(
                !line.contains("crate::{"),
                "{rel}: name each module in its own `use crate::...`"
            );
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != from {
                    graph.entry(from.clone()).or_default().insert(name);
                }
            }
        }
    }
    assert!(graph.len() > 15, "modules read: {:?}", graph.keys());
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let at = path.iter().position(|p| p == next).unwrap();
                    panic!("import cycle: {} -> {next}", path[at..].join(" -> "));
                }
                Some(_) => {}
                None => visit(next, graph, state, path),
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if !state.contains_key(m) {
            visit(m, &graph, &mut state, &mut Vec::new());
        }
    }
}

#[test]
fn sql_is_written_only_in_the_store() {
    let sql = [
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "DELETE FROM",
        "CREATE TABLE",
        "rusqlite",
        "postgres::",
    ];
    for (path, text) in sources() {
        let rel = relative(&path);
        if rel.starts_with("store/") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            for word in sql {
                assert!(
                    !code(line).contains(word),
                    "{rel}:{}: {word:?} outside src/store/: {line}",
                    n + 1
                );
            }
        }
    }
}

#[test]
fn only_the_metrics_module_handles_prometheus_labels() {
    let mut seen = 0;
    for (path, text) in sources() {
        let rel = relative(&path);
        let calls = text.matches("with_label_values").count();
        if rel == "metrics.rs" || rel.starts_with("metrics/") {
            seen += calls;
        } else {
            assert_eq!(
                calls, 0,
                "{rel} calls with_label_values: report through Metrics' methods"
            );
            assert!(
                !text.contains("use prometheus"),
                "{rel} uses prometheus directly"
            );
        }
    }
    assert!(seen > 20, "the metrics module's own calls: {seen}");
}

/// `(name, first line, lines)` of every `fn` with a body in `text`, by brace matching on the
/// code (comments, string and char literals skipped).
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = code(line).trim_start();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "fn") else {
            continue;
        };
        let leading = &words[..at];
        let allowed = [
            "pub",
            "pub(crate)",
            "pub(super)",
            "async",
            "const",
            "unsafe",
        ];
        if !leading.iter().all(|w| allowed.contains(w)) {
            continue;
        }
        let Some(name) = words
            .get(at + 1)
            .map(|w| w.split(['(', '<']).next().unwrap_or(""))
        else {
            continue;
        };
        let mut depth = 0i32;
        let mut opened = false;
        for (j, l) in lines.iter().enumerate().skip(i) {
            let mut in_str = false;
            let mut prev = ' ';
            for c in code(l).chars() {
                match c {
                    '"' if prev != '\\' => in_str = !in_str,
                    '{' if !in_str => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if !in_str => depth -= 1,
                    _ => {}
                }
                prev = if prev == '\\' && c == '\\' { ' ' } else { c };
            }
            if !opened && code(l).trim_end().ends_with(';') {
                break;
            }
            if opened && depth <= 0 {
                out.push((name.to_string(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

#[test]
fn no_function_in_src_is_longer_than_80_lines() {
    let mut counted = 0;
    let mut long = Vec::new();
    for (path, text) in sources() {
        for (name, line, n) in functions(&text) {
            counted += 1;
            if n > 80 {
                long.push(format!("{}:{line} {name} ({n} lines)", relative(&path)));
            }
        }
    }
    assert!(counted > 500, "functions read: {counted}");
    assert!(long.is_empty(), "functions over 80 lines: {long:#?}");
}

#[test]
fn the_function_reader_measures_what_it_reads() {
    let text =
        "fn a() {\n    let s = \"{\";\n}\n\npub async fn b(x: u8) -> u8 {\n    x\n}\nfn c();\n";
    assert_eq!(
        functions(text),
        vec![("a".to_string(), 1, 3), ("b".to_string(), 5, 3)]
    );
}
