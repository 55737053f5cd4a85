//! Versioned schema migrations, applied at start-up in one transaction that holds a
//! transaction advisory lock: replicas starting at the same instant against an empty database
//! apply each migration once, the others wait and then find nothing left to do.

use postgres::Client;

/// The migrations in order: `(version, name, SQL)`. Never edit one that shipped; add the next.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (
        2,
        "lease instance",
        include_str!("migrations/0002_lease.sql"),
    ),
    (
        3,
        "parked events",
        include_str!("migrations/0003_parked_events.sql"),
    ),
    (
        4,
        "watermarks",
        include_str!("migrations/0004_watermarks.sql"),
    ),
    (
        5,
        "access keys",
        include_str!("migrations/0005_access_keys.sql"),
    ),
];

/// The transaction advisory lock key serialising migrations: "dftrmigr" in ASCII.
const MIGRATION_LOCK: i64 = 0x6466_7472_6d69_6772;

/// Applies the migrations not yet recorded in `schema_migrations`. Returns how many ran.
pub(super) fn apply(client: &mut Client) -> anyhow::Result<usize> {
    use anyhow::Context;
    let mut tx = client.transaction()?;
    tx.query_one("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // `IF NOT EXISTS` on an existing table is a NOTICE the client would log at every start.
    tx.batch_execute("SET LOCAL client_min_messages = warning")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let newest: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    anyhow::ensure!(
        newest <= known,
        "the database has schema version {newest}, newer than this build knows ({known}): run the newer daftra-bridge"
    );
    let mut ran = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > newest) {
        tx.batch_execute(sql)
            .with_context(|| format!("applying migration {version} ({name})"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        ran += 1;
    }
    tx.commit()?;
    if ran > 0 {
        tracing::info!(
            migrations = ran,
            version = known,
            "PostgreSQL schema migrated"
        );
    }
    Ok(ran)
}
