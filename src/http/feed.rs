//! `GET /events`: the pull change feed, for consumers with neither a broker nor a public URL
//! (a server behind NAT, a nightly job, a spreadsheet macro). It reads the event log (the
//! outbox) after an opaque cursor, oldest first, in the CloudEvents JSON the other sinks send.
//! A reader, not a sink: it holds back no pruning, and a cursor older than what is kept is a
//! 410 naming the oldest cursor still available, never a silent gap. Any replica answers.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;

use super::gate::{self, Caller};
use super::{access, on_store, ApiError, AppState, Invalid};
use crate::access::Scope;
use crate::catalogue;
use crate::sinks::webhook::filter;
use crate::store::OutboxRow;

/// Events in one answer unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The most events one answer holds.
const MAX_LIMIT: usize = 1000;
/// The longest `wait`, in seconds.
const MAX_WAIT_SECS: u64 = 60;
/// Rows read from the log per store query; an answer reads at most `SCAN_ROUNDS` of them, so a
/// rare type does not make one request read the whole log (the cursor still moves past them).
const SCAN_BATCH: usize = 1000;
const SCAN_ROUNDS: usize = 20;
/// How often a waiting request looks at the log when no commit of this process wakes it (a
/// follower, or a leader's commit seen by another replica).
const RECHECK: Duration = Duration::from_millis(250);

/// The cursor after outbox position `seq`: opaque to clients (base64url of a versioned form).
pub fn cursor(seq: i64) -> String {
    let text = format!("v1:{seq}");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The outbox position of a cursor; `None` when it is not one of ours.
pub fn parse_cursor(cursor: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("v1:")?.parse().ok().filter(|s| *s >= 0)
}

/// A request's parameters, checked.
struct FeedQuery {
    /// `None`: from the oldest retained event.
    after: Option<After>,
    types: Vec<String>,
    limit: usize,
    wait: Duration,
}

enum After {
    Now,
    Seq(i64),
}

impl FeedQuery {
    fn parse(req: &HttpRequest) -> Result<FeedQuery, ApiError> {
        let q = access::query_params(req, &["after", "types", "limit", "wait"])?;
        let after = match q.get("after").map(String::as_str) {
            None | Some("") => None,
            Some("now") => Some(After::Now),
            Some(c) => Some(After::Seq(parse_cursor(c).ok_or_else(|| {
                Invalid::new(
                    "after",
                    "not a cursor of this feed: use a next_cursor it answered, or now",
                )
            })?)),
        };
        let types = match q.get("types").map(|t| t.trim()).filter(|t| !t.is_empty()) {
            None => vec!["#".to_string()],
            Some(list) => list
                .split(',')
                .map(|p| {
                    let p = p.trim();
                    filter::validate(p).map_err(|e| Invalid::new("types", e))?;
                    Ok(p.to_string())
                })
                .collect::<Result<_, ApiError>>()?,
        };
        let number = |name: &str, default: u64, (min, max): (u64, u64)| -> Result<u64, ApiError> {
            match q.get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        Invalid::new(name, format!("a whole number, {min} to {max}")).into()
                    }),
            }
        };
        let limit = number("limit", DEFAULT_LIMIT as u64, (1, MAX_LIMIT as u64))? as usize;
        let wait = Duration::from_secs(number("wait", 0, (0, MAX_WAIT_SECS))?);
        Ok(FeedQuery {
            after,
            types,
            limit,
            wait,
        })
    }

    /// Whether the caller asked for, and may read, the event of `row`.
    fn wants(&self, caller: &Caller, row: &OutboxRow) -> bool {
        let readable =
            catalogue::by_name(&row.event.resource).is_some_and(|r| caller.may_export(r));
        readable
            && self
                .types
                .iter()
                .any(|p| filter::matches(p, &row.event.routing_key))
    }
}

/// One read of the log after `after`: the bodies wanted and the position read up to.
async fn read(
    state: &AppState,
    caller: &Caller,
    q: &FeedQuery,
    after: i64,
) -> Result<(Vec<String>, i64), ApiError> {
    let mut bodies = Vec::new();
    let mut position = after;
    for _ in 0..SCAN_ROUNDS {
        let from = position;
        let rows = on_store(state, move |s| s.outbox_batch(from, SCAN_BATCH)).await?;
        let last_batch = rows.len() < SCAN_BATCH;
        for row in rows {
            if bodies.len() == q.limit {
                return Ok((bodies, position));
            }
            position = row.seq;
            if q.wants(caller, &row) {
                bodies.push(row.event.body);
            }
        }
        if last_batch || bodies.len() == q.limit {
            break;
        }
    }
    Ok((bodies, position))
}

/// `GET /events?after={cursor}&types=invoice.*,client.created&limit=500&wait=30`:
/// `{"events": [CloudEvents...], "next_cursor": "..."}`, the events after the cursor, oldest
/// first. `after=now` starts at the newest; no `after`, at the oldest retained. With `wait`
/// (seconds, at most 60) an empty answer waits for the next commit. A cursor before what is
/// kept is a 410 naming the oldest available.
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = gate::require(&state, &req, Scope::Feed).await?;
    let q = FeedQuery::parse(&req)?;
    let (start, head) = on_store(&state, |s| Ok((s.event_log_start()?, s.outbox_head()?))).await?;
    let after = match q.after {
        None => start,
        Some(After::Now) => head,
        Some(After::Seq(seq)) if seq < start => {
            return Err(ApiError::Gone(format!(
                "this cursor is older than the event log keeps (EVENT_LOG_RETENTION_SECS): events after it were pruned; the oldest cursor still available is {} (or start again with after=now)",
                cursor(start)
            )))
        }
        Some(After::Seq(seq)) if seq > head => {
            return Err(Invalid::new(
                "after",
                "this cursor is ahead of the event log (a cursor of another database, or one restored from a backup): start again with after=now, or with no cursor",
            )
            .into())
        }
        Some(After::Seq(seq)) => seq,
    };
    let wait = q.wait.min(state.admin.settings.feed_max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let mut appended = state.admin.outbox.subscribe();
    let (bodies, position) = loop {
        let (bodies, position) = read(&state, &caller, &q, after).await?;
        if !bodies.is_empty() || tokio::time::Instant::now() >= deadline {
            break (bodies, position);
        }
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep(RECHECK) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };
    if !wait.is_zero() && matches!(caller, Caller::Key(_)) {
        // A key revoked or expired while the request waited gets nothing more.
        gate::require(&state, &req, Scope::Feed).await?;
    }
    let mut body = String::from("{\"events\":[");
    body.push_str(&bodies.join(","));
    body.push_str("],\"next_cursor\":");
    body.push_str(&serde_json::Value::String(cursor(position)).to_string());
    body.push('}');
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(parse_cursor(&cursor(seq)), Some(seq));
        }
        assert_eq!(parse_cursor("now"), None);
        assert_eq!(parse_cursor("12"), None);
        assert_eq!(
            parse_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v1:-3")),
            None
        );
    }
}
