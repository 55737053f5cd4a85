//! Settings from the environment: defaults, errors naming the variable, secrets.

use super::*;

fn raw() -> RawEnv {
    RawEnv {
        daftra_subdomain: Some("acme".into()),
        daftra_api_key: Some("k".into()),
        ..Default::default()
    }
}

#[test]
fn defaults_follow_the_contract() {
    let s = Settings::from_raw(&raw(), None).unwrap();
    assert_eq!(s.daftra.base_url, "https://acme.daftra.com");
    assert_eq!(s.daftra.page_size, 1000);
    assert_eq!(s.daftra.concurrency, 4);
    assert_eq!(s.poll_interval, Duration::from_secs(60));
    assert!(!s.poll_emit_initial);
    assert_eq!(
        s.database,
        crate::store::Location::Sqlite(std::path::PathBuf::from("data/daftra-bridge.sqlite3"))
    );
    assert_eq!(s.amqp_exchange, "daftra.events");
    assert_eq!(s.poll_max_parallel, 4, "polls keep the request budget busy");
}

#[test]
fn bad_values_name_the_variable() {
    let mut r = raw();
    r.daftra_page_size = Some("1001".into());
    let e = Settings::from_raw(&r, None).unwrap_err();
    assert_eq!(e.name, "DAFTRA_PAGE_SIZE");
    assert!(e.to_string().contains("1001") && e.to_string().contains("1 to 1000"));
    let mut r = raw();
    r.poll_emit_initial = Some("maybe".into());
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "POLL_EMIT_INITIAL"
    );
    let mut r = raw();
    r.database_url = Some("mysql://x".into());
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "DATABASE_URL"
    );
}

#[test]
fn a_postgresql_url_selects_postgresql_and_its_password_is_never_shown() {
    for url in [
        "postgres://bridge:Hunter2Secret@db:5432/bridge",
        "postgresql://bridge:Hunter2Secret@db/bridge?sslmode=require",
        "postgres://bridge:Hunter2Secret@db/bridge?sslmode=verify-full",
    ] {
        let mut r = raw();
        r.database_url = Some(url.into());
        let s = Settings::from_raw(&r, None).unwrap();
        assert_eq!(s.database, crate::store::Location::Postgres(url.into()));
        let shown = format!("{s:?} {}", s.database.redacted());
        assert!(
            !shown.contains("Hunter2Secret") && shown.contains("bridge:***@db"),
            "{shown}"
        );
    }
    let mut r = raw();
    r.database_url = Some("postgres://bridge:Hunter2Secret@db/x?sslmode=sometimes".into());
    let e = Settings::from_raw(&r, None).unwrap_err();
    assert_eq!(e.name, "DATABASE_URL");
    assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
    let mut r = raw();
    r.advertise_url = Some("ftp://10.0.0.7".into());
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "ADVERTISE_URL"
    );
    r.advertise_url = Some("http://10.0.0.7:8080/".into());
    assert_eq!(
        Settings::from_raw(&r, None).unwrap().advertise_url,
        "http://10.0.0.7:8080"
    );
}

#[test]
fn empty_means_unset_and_booleans_take_common_spellings() {
    let mut r = raw();
    r.daftra_page_size = Some("  ".into());
    r.poll_emit_initial = Some("YES".into());
    let s = Settings::from_raw(&r, None).unwrap();
    assert_eq!(s.daftra.page_size, 1000);
    assert!(s.poll_emit_initial);
}

#[test]
fn secrets_never_print() {
    let mut r = raw();
    r.daftra_api_key = Some("supersecretkey".into());
    r.amqp_url = Some("amqp://u:hunter2@h/%2f".into());
    r.export_token = Some("tok3n".into());
    let s = Settings::from_raw(&r, None).unwrap();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains("supersecretkey") && !shown.contains("hunter2") && !shown.contains("tok3n")
    );
    assert_eq!(redact_url("amqp://u:hunter2@h/%2f"), "amqp://u:***@h/%2f");
}

#[test]
fn resources_are_chosen_by_name() {
    let s = Settings::from_raw(&raw(), None).unwrap();
    assert_eq!(s.resources.len(), 1);
    assert_eq!(s.resources[0].name, "work_orders");
    let mut r = raw();
    r.daftra_resources = Some(" invoices , work_orders,clients ".into());
    let s = Settings::from_raw(&r, None).unwrap();
    let names: Vec<_> = s.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["invoices", "clients", "work_orders"],
        "catalogue order"
    );
    r.daftra_resources = Some("ALL".into());
    assert_eq!(Settings::from_raw(&r, None).unwrap().resources.len(), 31);
    r.daftra_resources = Some("work_orders,invoice".into());
    let e = Settings::from_raw(&r, None).unwrap_err();
    assert_eq!(e.name, "DAFTRA_RESOURCES");
    let line = e.to_string();
    assert!(
        line.contains("\"invoice\"") && line.contains("invoices, estimates"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn per_resource_intervals_override_the_default() {
    let mut r = raw();
    r.poll_interval_secs = Some("120".into());
    r.poll_interval_overrides = [("INVOICES".to_string(), "30".to_string())].into();
    let s = Settings::from_raw(&r, None).unwrap();
    assert_eq!(s.interval_for("invoices"), Duration::from_secs(30));
    assert_eq!(s.interval_for("work_orders"), Duration::from_secs(120));
    r.poll_interval_overrides = [("INVOICE".to_string(), "30".to_string())].into();
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "POLL_INTERVAL_SECS_INVOICE"
    );
    r.poll_interval_overrides = [("INVOICES".to_string(), "0".to_string())].into();
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "POLL_INTERVAL_SECS_INVOICES"
    );
}

#[test]
fn change_strategies_default_to_auto_with_hourly_full_scans() {
    let s = Settings::from_raw(&raw(), None).unwrap();
    assert_eq!(s.strategy_for("invoices"), PollStrategy::Auto);
    assert_eq!(s.full_scan_every, Duration::from_secs(3_600));
    assert_eq!(s.poll_overlap, Duration::from_secs(300));
    let mut r = raw();
    r.poll_strategy = Some("FULL".into());
    r.poll_strategy_overrides = [("INVOICES".to_string(), "auto".to_string())].into();
    r.poll_full_scan_secs = Some("600".into());
    r.poll_overlap_secs = Some("0".into());
    let s = Settings::from_raw(&r, None).unwrap();
    assert_eq!(s.strategy_for("invoices"), PollStrategy::Auto);
    assert_eq!(s.strategy_for("clients"), PollStrategy::Full);
    assert_eq!(s.full_scan_every, Duration::from_secs(600));
    assert_eq!(s.poll_overlap, Duration::ZERO);
    for (field, bad, name) in [
        ("strategy", "sometimes", "POLL_STRATEGY"),
        ("override", "sometimes", "POLL_STRATEGY_INVOICES"),
        ("full", "0", "POLL_FULL_SCAN_SECS"),
        ("overlap", "-1", "POLL_OVERLAP_SECS"),
    ] {
        let mut r = raw();
        match field {
            "strategy" => r.poll_strategy = Some(bad.into()),
            "override" => {
                r.poll_strategy_overrides = [("INVOICES".to_string(), bad.to_string())].into()
            }
            "full" => r.poll_full_scan_secs = Some(bad.into()),
            _ => r.poll_overlap_secs = Some(bad.into()),
        }
        assert_eq!(Settings::from_raw(&r, None).unwrap_err().name, name);
    }
    let mut r = raw();
    r.poll_strategy_overrides = [("INVOICE".to_string(), "full".to_string())].into();
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "POLL_STRATEGY_INVOICE"
    );
}

#[test]
fn missing_credentials_are_named() {
    let r = RawEnv {
        daftra_subdomain: Some("acme".into()),
        daftra_client_id: Some("id".into()),
        ..Default::default()
    };
    assert_eq!(
        Settings::from_raw(&r, None).unwrap_err().name,
        "DAFTRA_CLIENT_SECRET"
    );
}

#[test]
fn a_bad_url_is_named_without_its_password() {
    let mut r = raw();
    r.database_url = Some("mysql://bridge:hunter2@db/x?password=hunter3".into());
    let e = Settings::from_raw(&r, None).unwrap_err().to_string();
    assert!(
        e.contains("DATABASE_URL") && e.contains("mysql://bridge:***@db/x"),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains("hunter3"), "{e}");
    let mut r = raw();
    r.daftra_base_url = Some("ftp://u:hunter2@acme.daftra.com".into());
    let e = Settings::from_raw(&r, None).unwrap_err().to_string();
    assert!(
        e.contains("DAFTRA_BASE_URL") && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn an_sqlite_url_with_credentials_or_options_and_a_bad_broker_port_stop_start_up() {
    for url in [
        "sqlite://user:Hunter2Secret@host/x.db",
        "sqlite:///tmp/q.sqlite3?password=Hunter2Secret",
    ] {
        let mut r = raw();
        r.database_url = Some(url.into());
        let e = Settings::from_raw(&r, None).unwrap_err();
        assert_eq!(e.name, "DATABASE_URL");
        assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
    }
    let mut r = raw();
    r.amqp_url = Some("amqp://guest:Hunter2Secret@127.0.0.1:99999/%2f".into());
    let e = Settings::from_raw(&r, None).unwrap_err();
    assert_eq!(e.name, "AMQP_URL");
    assert!(!e.to_string().contains("Hunter2Secret"), "{e}");
}
