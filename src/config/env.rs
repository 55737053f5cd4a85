//! Reading the environment safely: `.env` lines that cannot be parsed stop start-up with their
//! line number, values that are not UTF-8 never panic (a variable of the bridge's is an error
//! naming it, any other is ignored), and a variable with one of the bridge's prefixes that it
//! does not know gets a warning naming the closest known one.

use std::ffi::OsString;
use std::path::Path;

use super::ConfigError;

/// Every variable the bridge reads (besides those named after a resource,
/// `POLL_INTERVAL_SECS_{RESOURCE}` and `POLL_STRATEGY_{RESOURCE}`, and `RUST_LOG`).
/// A unit test keeps it equal to the fields of `RawEnv`.
pub const KNOWN: &[&str] = &[
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
    "DAFTRA_MAX_BACKOFF_SECS",
    "DAFTRA_TIMEZONE",
    "DAFTRA_DATE_FORMAT",
    "DAFTRA_RESOURCES",
    "POLL_INTERVAL_SECS",
    "POLL_UNAVAILABLE_RETRY_SECS",
    "POLL_MAX_PARALLEL",
    "POLL_DEADLINE_SECS",
    "POLL_EMIT_INITIAL",
    "POLL_STRATEGY",
    "POLL_FULL_SCAN_SECS",
    "POLL_OVERLAP_SECS",
    "DATABASE_URL",
    "AMQP_URL",
    "AMQP_EXCHANGE",
    "PUBLISH_CONFIRM_TIMEOUT_SECS",
    "BIND_ADDR",
    "ADVERTISE_URL",
    "PUBLIC_URL",
    "EXPORT_TOKEN",
    "EXPORT_MAX_XLSX_BUILDS",
    "SHUTDOWN_DEADLINE_SECS",
    "LOG_FORMAT",
    "ADMIN_TOKEN",
    "INBOUND_WEBHOOK_TOKEN",
    "WEBHOOK_RETRY_SCHEDULE_SECS",
    "WEBHOOK_TIMEOUT_SECS",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "EVENT_LOG_RETENTION_SECS",
    "FEED_MAX_WAIT_SECS",
    "WEBHOOK_MAX_IN_FLIGHT",
    "INBOUND_MIN_INTERVAL_SECS",
    "EVENT_MAX_BYTES",
    "BRIDGE_SECRETS_KEY",
    "BRIDGE_SECRETS_KEY_PREVIOUS",
    "LINK_SIGNING_KEY",
];

/// Prefixes of the bridge's variables: an unknown variable with one of them is probably a typo.
const PREFIXES: &[&str] = &[
    "DAFTRA_",
    "POLL_",
    "AMQP_",
    "EXPORT_",
    "WEBHOOK_",
    "PUBLISH_",
    "SHUTDOWN_",
    "DATABASE_",
    "BIND_",
    "ADMIN_",
    "INBOUND_",
    "EVENT_LOG_",
    "LINK_",
];

fn ours(name: &str) -> bool {
    KNOWN.contains(&name)
        || super::PER_RESOURCE_PREFIXES
            .iter()
            .any(|p| name.starts_with(p))
        || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A `.env` file that cannot be read, with its path and line number, never a value.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct DotenvError(String);

/// The `.env` of the working directory or its nearest parent that has one (as dotenvy finds it).
pub fn find_dotenv() -> Option<std::path::PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join(".env");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Loads `path` (`.env`) into the environment without overriding what is set. Missing is fine;
/// a line that is not `NAME=value` is an error naming the file and the line number (never the
/// value: it may be a secret), and nothing of the file is applied. Call before any thread
/// reads the environment.
pub fn load_dotenv(path: &Path) -> Result<(), DotenvError> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(());
    };
    let shown = path.display().to_string();
    let text = String::from_utf8(text).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        DotenvError(format!("{shown} line {line} is not UTF-8 text"))
    })?;
    // Windows editors start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
    let mut found = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => found.push(pair),
            Err(dotenvy::Error::LineParse(rest, _)) => {
                // dotenvy gives the unparsed text; find the line it starts on.
                let first = rest.lines().next().unwrap_or_default().trim_end();
                let line = text
                    .lines()
                    .position(|l| l.trim_end() == first || (!first.is_empty() && l.contains(first)))
                    .map_or(0, |i| i + 1);
                // Named only when it looks like a variable name (upper case, digits, `_`): a bare
                // word may be a pasted secret.
                let near = first
                    .split_once('=')
                    .map(|(name, _)| name)
                    .or_else(|| first.split_whitespace().next())
                    .map(str::trim)
                    .filter(|n| {
                        n.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                            && n.chars()
                                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    })
                    .map(|n| format!(" (near {n})"))
                    .unwrap_or_default();
                return Err(DotenvError(format!(
                    "{shown} line {line}{near} is not NAME=value (quote a value holding spaces or #); nothing of {shown} was applied"
                )));
            }
            Err(e) => return Err(DotenvError(format!("{shown} cannot be read: {e}"))),
        }
    }
    for (k, v) in found {
        if std::env::var_os(&k).is_none() {
            std::env::set_var(k, v);
        }
    }
    Ok(())
}

/// The environment's UTF-8 variables. A non-UTF-8 value of one of the bridge's variables is an
/// error naming it; any other non-UTF-8 variable is skipped.
pub fn utf8_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (k, v) in vars {
        let (Some(k), v) = (k.to_str().map(str::to_string), v) else {
            continue;
        };
        match v.into_string() {
            Ok(v) => out.push((k, v)),
            Err(_) if ours(&k) => {
                let name: &'static str = Box::leak(k.into_boxed_str());
                return Err(ConfigError {
                    name,
                    shown: "(not UTF-8)".into(),
                    expected: "UTF-8 text".into(),
                });
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Warnings for variables with the bridge's prefixes that it does not read, each naming the
/// closest known variable.
pub fn unknown_variable_warnings(vars: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = vars
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            PREFIXES.iter().any(|p| k.starts_with(p))
                && !KNOWN.contains(k)
                && !super::PER_RESOURCE_PREFIXES
                    .iter()
                    .any(|p| k.starts_with(p))
        })
        .map(|k| {
            let closest = KNOWN
                .iter()
                .min_by_key(|known| strsim::levenshtein(k, known))
                .copied()
                .unwrap_or_default();
            format!(
                "{k} is not a variable of daftra-bridge and is ignored; did you mean {closest}?"
            )
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn the_known_list_is_the_raw_environment() {
        let source = include_str!("mod.rs");
        let raw = source
            .split("pub struct RawEnv")
            .nth(1)
            .unwrap()
            .split('}')
            .next()
            .unwrap();
        let mut skip = false;
        let mut fields = Vec::new();
        for line in raw.lines().map(str::trim) {
            if line == "#[serde(skip)]" {
                skip = true;
                continue;
            }
            if let Some(f) = line.strip_prefix("pub ").and_then(|l| l.split(':').next()) {
                if !std::mem::take(&mut skip) {
                    fields.push(f.to_ascii_uppercase());
                }
            }
        }
        let mut known: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
        known.sort();
        fields.sort();
        assert_eq!(known, fields);
    }

    #[test]
    fn a_typo_is_warned_with_the_closest_name() {
        let vars = vec![
            ("DAFTRA_PAGESIZE".to_string(), "10".to_string()),
            ("DAFTRA_PAGE_SIZE".to_string(), "10".to_string()),
            ("POLL_INTERVAL_SECS_INVOICES".to_string(), "5".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        assert_eq!(
            unknown_variable_warnings(&vars),
            ["DAFTRA_PAGESIZE is not a variable of daftra-bridge and is ignored; did you mean DAFTRA_PAGE_SIZE?"]
        );
    }

    #[test]
    fn non_utf8_values_never_panic() {
        let bad = OsString::from_vec(vec![0x66, 0xff, 0x6f]);
        let vars = vec![
            (OsString::from("UNRELATED"), bad.clone()),
            (OsString::from("HOME"), OsString::from("/root")),
        ];
        assert_eq!(
            utf8_vars(vars).unwrap(),
            [("HOME".to_string(), "/root".to_string())]
        );
        let e = utf8_vars(vec![(OsString::from("DAFTRA_API_KEY"), bad)]).unwrap_err();
        assert_eq!(e.name, "DAFTRA_API_KEY");
        assert!(!e.to_string().contains('\u{fffd}'));
    }

    #[test]
    fn a_malformed_dotenv_line_is_named_by_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# comment\nDAFTRA_SUBDOMAIN=acme\n\nDAFTRA_API_KEY secret value\nLOG_FORMAT=json\n",
        )
        .unwrap();
        let e = load_dotenv(&path).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("line 4") && text.contains("DAFTRA_API_KEY"),
            "{text}"
        );
        assert!(!text.contains("secret value"), "{text}");
        assert!(load_dotenv(&dir.path().join("missing")).is_ok());
        std::fs::write(&path, "A=1\nHunter2Secret\n").unwrap();
        let text = load_dotenv(&path).unwrap_err().to_string();
        assert!(
            text.contains("line 2") && !text.contains("Hunter2"),
            "{text}"
        );
        std::fs::write(&path, "\u{feff}DAFTRA_DOTENV_TEST_BOM=1\n").unwrap();
        load_dotenv(&path).expect("a byte order mark is allowed");
        assert_eq!(std::env::var("DAFTRA_DOTENV_TEST_BOM").unwrap(), "1");
    }
}
