//! `daftra-bridge keys create|list|revoke` and `daftra-bridge link`: access keys and signed
//! links from the command line, against the store in `DATABASE_URL` (README "Access").

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::access::keys::{self, parse_expiry, rfc3339};
use crate::access::Scopes;
use crate::config::{AccessSettings, RawEnv};
use crate::keyring::{self, KeySpec, DEFAULT_MAX_EXPORTS, DEFAULT_PER_MINUTE};
use crate::store::Store;

/// What `keys` does.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Makes a key and prints it once (only its hash is stored).
    Create(CreateArgs),
    /// Lists every key: name, state, scopes, created, expires, last used, requests.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revokes a key (by id or name): refused from its next request, on every replica.
    Revoke {
        /// The key's id (the 12 hex digits after dbk_) or its name.
        key: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// What the key is for (powerbi, warehouse): metrics and logs name it.
    #[arg(long)]
    name: String,
    /// Exports it may read: names and areas, comma-separated (invoices,invoices_invoice_item or
    /// inventory), or * for all.
    #[arg(long, alias = "exports", value_name = "LIST")]
    resources: String,
    /// It may read GET /status.
    #[arg(long)]
    status: bool,
    /// It may start polls (POST /poll).
    #[arg(long)]
    poll: bool,
    /// It may read the event feed (GET /events).
    #[arg(long, alias = "events")]
    feed: bool,
    /// It may make signed links to its exports.
    #[arg(long)]
    share: bool,
    /// 90d, 12h, an RFC 3339 time, a date, or never.
    #[arg(long, default_value = "never")]
    expires: String,
    /// Exports it may run at once.
    #[arg(long, default_value_t = DEFAULT_MAX_EXPORTS)]
    max_exports: i64,
    /// Requests it may make per minute.
    #[arg(long, default_value_t = DEFAULT_PER_MINUTE)]
    per_minute: i64,
}

/// `daftra-bridge link`'s arguments.
#[derive(Args, Debug)]
pub struct LinkArgs {
    /// The export file: invoices.csv, stock_transactions.xlsx.
    file: String,
    /// An export parameter as name=value (repeatable): payment_status=unpaid, fields=id,total.
    #[arg(long = "filter", value_name = "NAME=VALUE")]
    filters: Vec<String>,
    /// How long it works: 7d, 12h, an RFC 3339 time or a date.
    #[arg(long, default_value = "7d")]
    expires: String,
    /// The address it starts with; ADVERTISE_URL by default.
    #[arg(long)]
    base_url: Option<String>,
}

/// A keyring error in the command line's words: its field as the flag that sets it.
fn flag_error(e: keyring::KeyringError) -> anyhow::Error {
    match e {
        keyring::KeyringError::Invalid { field, message } => {
            let flag = match field {
                "exports" => "resources".to_string(),
                other => other.replace('_', "-"),
            };
            anyhow::anyhow!("--{flag}: {message}")
        }
        other => other.into(),
    }
}

fn open() -> anyhow::Result<(AccessSettings, Store)> {
    let settings = AccessSettings::from_raw(&RawEnv::from_env()?)?;
    let store = Store::connect(&settings.database)
        .with_context(|| {
            format!(
                "opening the store at {} (DATABASE_URL)",
                settings.database.redacted()
            )
        })?
        .sealing(settings.secrets_keys.clone());
    Ok((settings, store))
}

/// Runs `keys ...`.
pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let (_, store) = open()?;
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create(a) => {
            let at = keys::now();
            let spec = KeySpec {
                name: a.name,
                scopes: Scopes {
                    exports: Scopes::parse_exports(&a.resources)
                        .map_err(|e| anyhow::anyhow!("--resources: {e}"))?,
                    status: a.status,
                    poll: a.poll,
                    feed: a.feed,
                    share: a.share,
                },
                expires_at: parse_expiry(&a.expires, at)
                    .map_err(|e| anyhow::anyhow!("--expires: {e}"))?,
                max_exports: a.max_exports,
                per_minute: a.per_minute,
            };
            let (key, token) = keyring::create(&store, spec, at).map_err(flag_error)?;
            writeln!(out, "{}", token.expose())?;
            let expires = key.expires_at.map_or_else(|| "never".into(), rfc3339);
            eprintln!(
                "Created the key {:?} ({}; expires {expires}). It is shown this once: only its hash is kept.",
                key.name,
                key.scopes.summary()
            );
        }
        KeysCommand::List { json } => list(&store, json, &mut out)?,
        KeysCommand::Revoke { key } => {
            let found = keyring::find(&store, &key)?.with_context(|| {
                format!("no access key with the id or name {key:?} (keys list shows them)")
            })?;
            match store.revoke_key(&found.id, keys::now())? {
                true => eprintln!("Revoked the key {:?} ({}).", found.name, found.id),
                false => eprintln!(
                    "The key {:?} ({}) was revoked already.",
                    found.name, found.id
                ),
            }
        }
    }
    Ok(())
}

fn list(store: &Store, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let at = keys::now();
    let all = store.keys()?;
    if json {
        let shown: Vec<_> = all.iter().map(|k| keyring::shown(k, at)).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        return Ok(());
    }
    let time = |t: Option<i64>| t.map_or_else(|| "-".into(), rfc3339);
    writeln!(
        out,
        "{:<12} {:<20} {:<8} {:<20} {:<20} {:<20} {:>9}  scopes",
        "id", "name", "state", "created", "expires", "last used", "requests"
    )?;
    for k in &all {
        writeln!(
            out,
            "{:<12} {:<20} {:<8} {:<20} {:<20} {:<20} {:>9}  {}",
            k.id,
            k.name,
            keyring::state(k, at),
            rfc3339(k.created_at),
            time(k.expires_at),
            time(k.last_used_at),
            k.requests,
            k.scopes.summary()
        )?;
    }
    Ok(())
}

/// Runs `link ...`: prints the signed URL.
pub fn link(args: LinkArgs) -> anyhow::Result<()> {
    let (settings, store) = open()?;
    let signing_key = match settings.link_signing_key {
        Some(k) => k,
        None => store.link_signing_key().context("the link signing key")?,
    };
    let pairs = args
        .filters
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--filter {f:?}: expected NAME=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let expires_at = parse_expiry(&args.expires, keys::now())
        .map_err(|e| anyhow::anyhow!("--expires: {e}"))?
        .context("--expires: a link must expire (7d, 12h, a time or a date)")?;
    let base = args.base_url.unwrap_or(settings.advertise_url);
    let url =
        keyring::link(&signing_key, &base, &args.file, &pairs, expires_at).map_err(
            |e| match e {
                keyring::KeyringError::Invalid {
                    field: "query",
                    message,
                } => {
                    anyhow::anyhow!("--filter: {message}")
                }
                keyring::KeyringError::Invalid {
                    field: "export",
                    message,
                } => anyhow::anyhow!("{message}"),
                other => flag_error(other),
            },
        )?;
    writeln!(std::io::stdout(), "{url}")?;
    eprintln!("The link works until {}.", rfc3339(expires_at));
    Ok(())
}
