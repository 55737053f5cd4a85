//! `daftra-bridge check`: reads the configuration and asks each dependency (Daftra's Site
//! Info, the broker, the store) whether it answers as `serve` needs, printing one line each with
//! what to fix. The command a newcomer runs before `serve`, and a Kubernetes init step.

use std::time::Duration;

use crate::account::{Account, DEFAULT_ACCOUNT};
use crate::config::{DaftraAuth, RawEnv, Settings};
use crate::metrics::Metrics;
use crate::secret::redact_url;
use crate::store::Store;

/// How long the broker may take to answer.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// One dependency's answer: `Ok` with what was found, `Err` with what to fix.
type Answer = Result<String, String>;

fn line(name: &str, answer: &Answer) -> String {
    match answer {
        Ok(found) => format!("{name:<8} ok      {found}"),
        Err(fix) => format!("{name:<8} FAILED  {fix}"),
    }
}

/// The variables of the credentials in use.
fn credential_variables(auth: &DaftraAuth) -> &'static str {
    match auth {
        DaftraAuth::ApiKey(_) => "DAFTRA_API_KEY",
        DaftraAuth::OAuth { .. } => {
            "DAFTRA_CLIENT_ID, DAFTRA_CLIENT_SECRET, DAFTRA_USERNAME and DAFTRA_PASSWORD"
        }
    }
}

/// Daftra: the account's Site Info with the configured credentials (one retry at most).
async fn daftra(settings: &Settings) -> Answer {
    let mut daftra = settings.daftra.clone();
    daftra.max_retries = daftra.max_retries.min(1);
    let (base, variables) = (daftra.base_url.clone(), credential_variables(&daftra.auth));
    let account = Account::new(DEFAULT_ACCOUNT, daftra, Metrics::new());
    match account.client.site_zone().await {
        Ok(zone) => {
            let in_use = account.clock.zone.name();
            let zone = match zone.and_then(|z| z.zone) {
                Some(z) if z != in_use => format!(
                    "the account's time zone is {z} but DAFTRA_TIMEZONE is {in_use}: set DAFTRA_TIMEZONE={z}"
                ),
                Some(z) => format!("time zone {z}"),
                None => format!("no time zone reported; DAFTRA_TIMEZONE is {in_use}"),
            };
            Ok(format!("{base} answered Site Info with {variables} ({zone})"))
        }
        Err(e) => match account.client.credentials().refusal() {
            Some(r) => Err(format!("{base} refuses the credentials (HTTP {}: {}): check {variables}", r.status, r.message)),
            None => Err(format!("{base} could not be read: {e}: check DAFTRA_BASE_URL or DAFTRA_SUBDOMAIN, and the network")),
        },
    }
}

/// The broker: a connection with `AMQP_URL` and the exchange declared as `serve` declares it.
async fn broker(settings: &Settings) -> Answer {
    let shown = redact_url(settings.amqp_url.expose());
    let opened = async {
        let conn = crate::sinks::amqp::connect(&settings.amqp_url).await?;
        let declared = async {
            let channel = conn.create_channel().await?;
            crate::sinks::amqp::declare_exchange(&channel, &settings.amqp_exchange).await
        }
        .await;
        let _ = conn.close(200, "checked").await;
        declared
    };
    match tokio::time::timeout(BROKER_TIMEOUT, opened).await {
        Ok(Ok(())) => Ok(format!(
            "{shown} accepted the bridge; exchange {} declared",
            settings.amqp_exchange
        )),
        Ok(Err(e)) => Err(match crate::sinks::amqp::refusal(&e) {
            Some((_, said)) => said,
            None => format!("{shown} not reachable: {e}: check AMQP_URL and that RabbitMQ runs"),
        }),
        Err(_) => Err(format!(
            "{shown} did not answer within {} s: check AMQP_URL and that RabbitMQ runs",
            BROKER_TIMEOUT.as_secs()
        )),
    }
}

/// The store: opened (and migrated) at `DATABASE_URL`, and answering.
async fn store(settings: &Settings) -> Answer {
    let location = settings.database.clone();
    let keys = settings.secrets_keys.clone();
    let shown = location.redacted();
    let opened = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let store = Store::connect(&location)?.sealing(keys);
        store.ping()?;
        Ok(store.any_baseline()?)
    })
    .await
    .map_err(|e| e.to_string())?;
    // The stored secrets open with the keys given, as `serve` requires at start-up.
    let location = settings.database.clone();
    let keys = settings.secrets_keys.clone();
    let secrets = tokio::task::spawn_blocking(move || {
        Store::connect(&location).map(|s| s.sealing(keys).endpoints())
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Ok(Err(e)) = secrets {
        return Err(format!("{shown}: {e}: check BRIDGE_SECRETS_KEY (and BRIDGE_SECRETS_KEY_PREVIOUS during a rotation)"));
    }
    match opened {
        Ok(snapshot) => Ok(format!(
            "{shown} answers, schema up to date{}",
            if snapshot {
                ", a snapshot to serve"
            } else {
                ", no snapshot yet"
            }
        )),
        Err(e) => Err(format!("{shown}: {e:#}: check DATABASE_URL")),
    }
}

/// Prints one line; a reader that went away (`check | head -1`) is not an error.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Runs every check and prints one line each to standard output. `Err` names how many failed
/// (the command then exits non-zero).
pub async fn run() -> anyhow::Result<()> {
    let settings = RawEnv::from_env()
        .map_err(anyhow::Error::from)
        .and_then(|raw| Ok(Settings::from_raw(&raw, None)?));
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            say(&line("config", &Err(format!("{e}"))));
            anyhow::bail!("the configuration is invalid; nothing else was checked");
        }
    };
    let names: Vec<&str> = settings.resources.iter().map(|r| r.name.as_str()).collect();
    say(&line(
        "config",
        &Ok(format!("{} resource(s): {}", names.len(), names.join(", "))),
    ));
    let answers = [
        ("daftra", daftra(&settings).await),
        ("broker", broker(&settings).await),
        ("store", store(&settings).await),
    ];
    for (name, answer) in &answers {
        say(&line(name, answer));
    }
    let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} checks failed",
        answers.len() + 1
    );
    Ok(())
}
