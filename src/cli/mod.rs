//! The command line: `serve` (default), `demo` and `export` (README "Pointing it at your Daftra account"),
//! `keys` and `link` (README "Access", in [`keys`]).

mod keys;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::account::{Account, DEFAULT_ACCOUNT};
use crate::catalogue::Resource;
use crate::config::{RawEnv, Settings};
use crate::export::{self, ExportJob, ExportQuery, Format, Output, QueryError, Rows, Source};
use crate::metrics::Metrics;
use crate::startup::{shutdown_on_signals, Application};
use crate::store::{Location, Store};

/// Bridge from Daftra (every list resource: invoices, clients, products, stock, journals, work
/// orders, ...) to spreadsheets by URL, RabbitMQ change events and Prometheus metrics.
/// Configured by environment variables (see .env.example).
#[derive(Parser, Debug)]
#[command(name = "daftra-bridge", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Csv,
    Xlsx,
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SourceArg {
    Live,
    Snapshot,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// HTTP server + poller + publisher, configured from the environment (the default).
    Serve,
    /// The whole bridge against a built-in simulated Daftra tenant whose records change over time.
    Demo(crate::demo::DemoArgs),
    /// Checks the configuration, Daftra (Site Info with the credentials), the broker and the
    /// store: one line each with what to fix; exits non-zero when one fails. Run it before
    /// `serve` (or as a Kubernetes init step).
    Check,
    /// The catalogue: every Daftra resource the bridge knows, its area, columns and line-item
    /// groups, and whether DAFTRA_RESOURCES enables it.
    Resources {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Access keys: create, list, revoke (README "Access").
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Prints a signed link to one export and query, working with no other token until it
    /// expires: `daftra-bridge link invoices.csv --filter payment_status=unpaid --expires 7d`.
    Link(keys::LinkArgs),
    /// One-shot export to a file or standard output.
    Export {
        /// A resource (work_orders, invoices, ...) or a line-item export (invoices_invoice_item).
        resource: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: FormatArg,
        /// Output file; standard output when absent (CSV and JSON Lines only).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Read Daftra now (default) or the poller's snapshot in DATABASE_URL.
        #[arg(long, value_enum, default_value = "live")]
        source: SourceArg,
        /// Columns in output order, comma-separated.
        #[arg(long)]
        fields: Option<String>,
        /// Statuses, as numbers or names: 1,2 or open,closed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long)]
        staff_id: Option<String>,
        /// A column, or -column for descending (`--sort -quantity` or `--sort=-quantity`).
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        /// Start the CSV with a UTF-8 byte order mark.
        #[arg(long)]
        bom: bool,
        /// Any other export parameter as name=value, e.g. created_from=2026-01-01 (repeatable).
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filters: Vec<String>,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Check => crate::check::run().await,
        Command::Resources { json } => print_resources(json),
        Command::Keys { command } => keys::keys(command),
        Command::Link(args) => keys::link(args),
        Command::Export {
            resource,
            format,
            output,
            source,
            fields,
            status,
            client_id,
            staff_id,
            sort,
            bom,
            filters,
        } => {
            let mut pairs: Vec<(String, String)> = [
                ("fields", fields),
                ("status", status),
                ("client_id", client_id),
                ("staff_id", staff_id),
                ("sort", sort),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect();
            if bom {
                pairs.push(("bom".into(), "true".into()));
            }
            for f in filters {
                let (k, v) = f
                    .split_once('=')
                    .with_context(|| format!("--filter {f:?}: expected NAME=VALUE"))?;
                pairs.push((k.to_string(), v.to_string()));
            }
            let format = match format {
                FormatArg::Csv => Format::Csv,
                FormatArg::Xlsx => Format::Xlsx,
                FormatArg::Jsonl => Format::Jsonl,
                FormatArg::Parquet => Format::Parquet,
            };
            let source = match source {
                SourceArg::Live => Source::Live,
                SourceArg::Snapshot => Source::Snapshot,
            };
            export_command(&resource, format, output, source, pairs).await
        }
    }
}

/// `daftra-bridge resources`: the catalogue as a table (or JSON), enabled ones marked.
fn print_resources(as_json: bool) -> anyhow::Result<()> {
    let raw = RawEnv::from_env()?;
    // The command that lists the valid names still lists them when the variable is wrong.
    let enabled = match crate::config::resolve_resources(&raw.daftra_resources) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("daftra-bridge: {e}");
            Vec::new()
        }
    };
    let is_enabled = |r: &crate::catalogue::Resource| enabled.iter().any(|e| e.name == r.name);
    let mut out = std::io::stdout().lock();
    if as_json {
        let list: Vec<_> = crate::catalogue::all()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "area": r.area, "title": r.title, "enabled": is_enabled(r),
                    "path": r.list_path, "model_key": r.model_key,
                    "columns": r.columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
                    "line_items": crate::catalogue::line_item_exports(r).map(|e| serde_json::json!({
                        "group": e.model_key, "export": e.name,
                        "columns": e.columns.iter().map(|c| &c.name).collect::<Vec<_>>()})).collect::<Vec<_>>(),
                    "notes": r.notes,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<26} {:<11} {:<8} {:>7}  line items (export)",
        "resource", "area", "enabled", "columns"
    )?;
    for r in crate::catalogue::all() {
        let groups: Vec<String> = r
            .line_items
            .iter()
            .map(|g| format!("{} ({})", g.key, g.export))
            .collect();
        writeln!(
            out,
            "{:<26} {:<11} {:<8} {:>7}  {}",
            r.name,
            r.area,
            if is_enabled(r) { "yes" } else { "no" },
            r.columns.len(),
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(", ")
            }
        )?;
    }
    writeln!(
        out,
        "\nEnable with DAFTRA_RESOURCES=name,name or all; `daftra-bridge resources --json` lists every column."
    )?;
    Ok(())
}

fn settings() -> anyhow::Result<Settings> {
    let raw = RawEnv::from_env()?;
    Ok(Settings::from_raw(&raw, None)?)
}

async fn serve() -> anyhow::Result<()> {
    let settings = settings()?;
    crate::telemetry::init(settings.log_format);
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(daftra = %settings.daftra.base_url, bind = %settings.bind_addr, exchange = %settings.amqp_exchange,
        database = %settings.database.redacted(), "Starting daftra-bridge");
    let app = Application::build(settings)?;
    app.run_until_stopped(shutdown_on_signals()).await
}

/// `--fields`, `--status`, ... for the parameters with a flag of their own, `--filter NAME`
/// for the others: an export error names what the user typed.
fn flag_error(e: QueryError) -> anyhow::Error {
    let flag = if ["fields", "status", "client_id", "staff_id", "sort", "bom"]
        .contains(&e.field.as_str())
    {
        format!("--{}", e.field.replace('_', "-"))
    } else {
        format!("--filter {}", e.field)
    };
    anyhow::anyhow!("{flag}: {}", e.message)
}

async fn export_command(
    resource: &str,
    format: Format,
    output: Option<PathBuf>,
    source: Source,
    pairs: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let export = crate::catalogue::export_by_name(resource).with_context(|| {
        format!("no resource or line-item export named {resource:?}; `daftra-bridge resources` lists them")
    })?;
    let query = ExportQuery::parse(export, &pairs).map_err(flag_error)?;
    // `-o -` is standard output, as for most command-line tools.
    let output = output.filter(|p| p.as_os_str() != "-");
    let clock = crate::config::resolve_clock(&RawEnv::from_env()?)?;
    let job = ExportJob::new(query, format, clock).map_err(flag_error)?;
    if !format.streams() && output.is_none() {
        anyhow::bail!(
            "--output FILE is required for {} (the file is not written to standard output)",
            format.as_str().to_uppercase()
        );
    }
    let raw = RawEnv::from_env()?;
    let rows = match source {
        Source::Snapshot => snapshot_rows(&raw, export)?,
        Source::Live => {
            let settings = Settings::from_raw(&raw, None)?;
            let account = Account::new(DEFAULT_ACCOUNT, settings.daftra, Metrics::new());
            // The first page is read before anything is written, so a Daftra that cannot be read
            // fails the command with no output at all.
            Rows::live(&account, export, Arc::new(()))
                .await
                .context("reading Daftra")?
        }
    };
    let n = tokio::task::spawn_blocking(move || write_export(&job, rows, output)).await??;
    // A reader that went away (`| head`) is not a failure of the export.
    let _ = writeln!(std::io::stderr(), "Exported {n} rows");
    Ok(())
}

/// The snapshot of `export`'s source in `DATABASE_URL`, once its first poll has recorded one.
fn snapshot_rows(raw: &RawEnv, export: &'static Resource) -> anyhow::Result<Rows> {
    let location = Location::from_setting(raw.database_url.as_deref()).map_err(|shown| {
        anyhow::anyhow!("DATABASE_URL={shown:?} is not sqlite://path or postgres://...")
    })?;
    if let Location::Sqlite(path) = &location {
        anyhow::ensure!(
            path.exists(),
            "no snapshot at {} (DATABASE_URL): run `daftra-bridge serve` first, or use --source live",
            path.display()
        );
    }
    let store = Store::connect(&location)?;
    let key = crate::feed::key(DEFAULT_ACCOUNT, export.source());
    let name = &export.source().name;
    let enabled = crate::config::resolve_resources(&raw.daftra_resources)
        .map(|rs| rs.iter().any(|r| &r.name == name))
        .unwrap_or(true);
    anyhow::ensure!(
        store.has_baseline(&key)? || enabled,
        "the snapshot at {} holds no {name}, and DAFTRA_RESOURCES does not name it: add it there for `serve` to poll it, or use --source live",
        location.redacted(),
    );
    anyhow::ensure!(
        store.has_baseline(&key)?,
        "the snapshot at {} holds no {name} yet: wait for the first poll, or use --source live",
        location.redacted(),
    );
    Ok(Rows::Snapshot { store, key })
}

/// Writes the export (blocking): a CSV file is written beside its target and renamed into place
/// once complete, so a failed export leaves no partial file and never replaces an existing one;
/// a reader of standard output that stops early (`| head`) is not a failure.
fn write_export(job: &ExportJob, rows: Rows, output: Option<PathBuf>) -> anyhow::Result<u64> {
    match (job.format, output) {
        (format, Some(path)) if format.streams() => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let file = std::io::BufWriter::new(tmp.reopen()?);
            let n = job.run(rows, Output::of(format, Box::new(file), path.clone()), &())?;
            tmp.persist(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(n)
        }
        (format, None) if format.streams() => {
            let out = std::io::BufWriter::new(std::io::stdout());
            let output = Output::of(format, Box::new(out), PathBuf::new());
            match job.run(rows, output, &()) {
                Err(export::ExportError::Closed) => Ok(0),
                Err(e) => Err(e.into()),
                Ok(n) => {
                    let _ = std::io::stdout().flush();
                    Ok(n)
                }
            }
        }
        (format, Some(path)) => {
            let output = Output::of(format, Box::new(std::io::sink()), path);
            Ok(job.run(rows, output, &())?)
        }
        (_, None) => unreachable!("checked before the rows were read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descending_sort_reads_with_or_without_the_equals_sign() {
        for args in [
            ["daftra-bridge", "export", "invoices", "--sort", "-quantity"],
            [
                "daftra-bridge",
                "export",
                "invoices",
                "--sort=-quantity",
                "--bom",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Some(Command::Export { sort, .. }) = cli.command else {
                panic!("an export");
            };
            assert_eq!(sort.as_deref(), Some("-quantity"));
        }
    }
}
