-- Where each feed's polls that read only what changed have got to: the newest change time
-- committed (`changed_at`, the account's wall clock, YYYY-MM-DD HH:MM:SS) and the change time
-- up to which incremental polls since the last full scan read (`audited_to`), which that full
-- scan holds them to.
CREATE TABLE watermark (
    resource TEXT PRIMARY KEY,
    changed_at TEXT NOT NULL,
    audited_to TEXT
);
