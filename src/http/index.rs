//! `GET /`: the downloads page. Every enabled export, grouped by area, with its record count,
//! when its data was last refreshed, its state (`fresh`, `stale`, `unavailable`), download links
//! and a form offering every filter the export accepts ([`query::parameters`]).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};

use super::gate::{self, Caller};
use super::{access, ApiError, AppState};
use crate::access::Scope;
use crate::catalogue::{self, Column, ColumnKind, Resource};
use crate::export::query;
use crate::status::PollStatus;

/// Polls missed before an export counts as stale.
const STALE_AFTER_INTERVALS: u32 = 3;

/// Text for an HTML text node or a double- or single-quoted attribute.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How current an export's data is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freshness {
    /// The last successful poll is younger than three poll intervals.
    Fresh,
    /// No successful poll yet, or the last one is older than three poll intervals.
    Stale,
    /// The account cannot read the resource (its list answered 401, 403 or 404).
    Unavailable,
}

impl Freshness {
    fn as_str(self) -> &'static str {
        match self {
            Freshness::Fresh => "fresh",
            Freshness::Stale => "stale",
            Freshness::Unavailable => "unavailable",
        }
    }
}

/// The state of a resource from its poll status, its poll interval and the time now, with the
/// time of its last successful poll when there was one.
fn freshness(
    status: &PollStatus,
    interval: Duration,
    now: DateTime<Utc>,
) -> (Freshness, Option<DateTime<Utc>>) {
    let last = status
        .last_success
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let state = match last {
        _ if !status.available => Freshness::Unavailable,
        None => Freshness::Stale,
        Some(at) => {
            let age = (now - at).to_std().unwrap_or_default();
            if age > interval.saturating_mul(STALE_AFTER_INTERVALS) {
                Freshness::Stale
            } else {
                Freshness::Fresh
            }
        }
    };
    (state, last)
}

/// `45 s ago`, `3 min ago`, `5 h ago`, `2 d ago` (`just now` for a time a little ahead).
fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 1 => "just now".into(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

/// `1 h` or `5 min` or `30 s`, for the stale hint.
fn span(d: Duration) -> String {
    match d.as_secs() {
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The line under an export's title: state label, record count and last refresh.
fn meta(state: &AppState, r: &'static Resource, now: DateTime<Utc>) -> (Freshness, String) {
    let source = r.source();
    let key = state
        .served
        .feeds
        .by_resource(&source.name)
        .map_or(source.name.as_str(), |f| f.key());
    let status = state.health.status.get(key).unwrap_or(PollStatus {
        available: true,
        ..Default::default()
    });
    let interval = state.served.interval(key).unwrap_or(Duration::MAX);
    let (fresh, last) = freshness(&status, interval, now);
    let why = match fresh {
        Freshness::Unavailable => format!(
            "the account cannot read {}: {}",
            source.name,
            status.last_error.as_deref().unwrap_or("no access")
        ),
        Freshness::Stale if last.is_none() => "no successful poll yet".into(),
        Freshness::Stale => format!(
            "last success older than {STALE_AFTER_INTERVALS} poll intervals of {}",
            span(interval)
        ),
        Freshness::Fresh => format!("polled every {}", span(interval)),
    };
    // A line-item export shows its parent's record count: counting the lines would read every
    // stored record on each page view.
    let records = match &r.parent {
        None => format!("{} records", status.records),
        Some(_) => format!("{} records of {}", status.records, source.name),
    };
    let refreshed = match last {
        Some(at) => {
            let iso = at.to_rfc3339_opts(SecondsFormat::Secs, true);
            format!(
                "<time class=\"refreshed\" datetime=\"{iso}\">{iso}</time> <span class=\"ago\">({})</span>",
                ago((now - at).num_seconds())
            )
        }
        None => "<span class=\"refreshed\">never</span>".into(),
    };
    let s = fresh.as_str();
    let html = format!(
        "<p class=\"meta\"><span class=\"state state-{s}\" data-state=\"{s}\" title=\"{why}\">{s}</span> · \
         <span class=\"records\" data-records=\"{n}\">{records}</span> · last refreshed {refreshed}</p>",
        why = html_escape(&why),
        n = status.records,
        records = html_escape(&records),
    );
    (fresh, html)
}

/// One `<option>` per distinct label of an enum column; its value is the label, which the
/// filter takes in any case (or the numbers, should a label ever hold a comma).
fn enum_select(c: &Column) -> String {
    let mut out = format!(
        "<select name=\"{n}\"><option value=\"\">any</option>",
        n = html_escape(&c.name)
    );
    for label in c.distinct_labels() {
        let values: Vec<String> = c
            .labels
            .iter()
            .filter(|(_, l)| l == label)
            .map(|(v, _)| v.map_or_else(|| "no value".into(), |v| v.to_string()))
            .collect();
        let value = if label.contains(',') {
            c.enum_values(label)
                .iter()
                .flatten()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            label.to_string()
        };
        out.push_str(&format!(
            "<option value=\"{}\">{} ({})</option>",
            html_escape(&value),
            html_escape(label),
            html_escape(&values.join(", "))
        ));
    }
    out + "</select>"
}

/// The form control of query parameter `p` of export `r`.
fn control(r: &Resource, p: &str) -> String {
    let n = html_escape(p);
    let column = r.column(p);
    let date_of = p
        .strip_suffix("_from")
        .or_else(|| p.strip_suffix("_to"))
        .and_then(|c| r.column(c))
        .filter(|c| matches!(c.kind, ColumnKind::Date | ColumnKind::Timestamp));
    let input = match (p, column) {
        ("fields", _) => {
            let hint: Vec<&str> = r.columns.iter().take(2).map(|c| c.name.as_str()).collect();
            format!(
                "<input name=\"fields\" type=\"text\" placeholder=\"{}\" title=\"columns, comma-separated, in output order\">",
                html_escape(&hint.join(","))
            )
        }
        ("sort", _) => {
            let mut s = format!(
                "<select name=\"sort\"><option value=\"\">{} ascending (default)</option>",
                html_escape(&r.key)
            );
            for c in &r.columns {
                let c = html_escape(&c.name);
                s.push_str(&format!(
                    "<option value=\"{c}\">{c} ascending</option><option value=\"-{c}\">{c} descending</option>"
                ));
            }
            s + "</select>"
        }
        ("source", _) => "<select name=\"source\"><option value=\"\">snapshot (live before the first poll)</option>\
             <option value=\"snapshot\">snapshot only</option><option value=\"live\">live from Daftra</option></select>"
            .into(),
        ("bom", _) => {
            return "<label title=\"CSV only: a UTF-8 byte order mark, so Excel reads Arabic\">\
                    <input name=\"bom\" type=\"checkbox\" value=\"true\"> bom</label> "
                .into()
        }
        (_, Some(c)) if !c.labels.is_empty() => enum_select(c),
        (_, Some(c)) if c.kind == ColumnKind::Int => {
            format!("<input name=\"{n}\" type=\"number\" step=\"1\" inputmode=\"numeric\">")
        }
        _ if date_of.is_some() => format!("<input name=\"{n}\" type=\"date\">"),
        // A parameter this page does not know yet still gets a field.
        _ => format!("<input name=\"{n}\" type=\"text\">"),
    };
    format!("<label>{n} {input}</label> ")
}

/// The section of one export: title, state, links and its filter form.
fn section(
    state: &AppState,
    r: &'static Resource,
    now: DateTime<Utc>,
    link_token: &str,
    form_token: &str,
) -> String {
    let (fresh, meta) = meta(state, r, now);
    let n = html_escape(&r.name);
    let level = if r.parent.is_some() { "h4" } else { "h3" };
    let cols: String = r
        .columns
        .iter()
        .map(|c| format!("<code>{}</code> ", html_escape(&c.name)))
        .collect();
    let controls: String = query::parameters(r).iter().map(|p| control(r, p)).collect();
    format!(
        "<section class=\"export\" id=\"export-{n}\" data-export=\"{n}\" data-state=\"{s}\">\
         <{level}>{title} <small><code>{n}</code></small></{level}>{meta}\
         <p><a href=\"/exports/{n}.csv?bom=true{link_token}\">CSV (Excel)</a> · <a href=\"/exports/{n}.csv?source=snapshot{link_token}\">CSV</a> · \
         <a href=\"/exports/{n}.xlsx?source=snapshot{link_token}\">XLSX</a> · \
         <a href=\"/exports/{n}.jsonl?source=snapshot{link_token}\">JSON Lines</a> · <a href=\"/exports/{n}.parquet?source=snapshot{link_token}\">Parquet</a></p><details><summary>Columns and filters</summary><p>{cols}</p>\
         <form action=\"/exports/{n}.csv\" data-path=\"/exports/{n}\" method=\"get\">{form_token}\
         <label>format <select class=\"format\" onchange=\"this.form.action=this.form.dataset.path+'.'+this.value;\
         if(this.form.bom)this.form.bom.disabled=this.value!=='csv'\"><option value=\"csv\" selected>csv</option><option value=\"xlsx\">xlsx</option><option value=\"jsonl\">jsonl</option><option value=\"parquet\">parquet</option></select></label> \
         {controls}<button>Download</button></form></details></section>",
        s = fresh.as_str(),
        title = html_escape(&r.title),
    )
}

/// The share button of an export section, for a caller allowed to make signed links.
const SHARE_BUTTON: &str = "<button type=\"button\" class=\"share\" onclick=\"shareLink(this.form)\">Copy signed link (7 days)</button> <input class=\"signed-link\" readonly size=\"40\" hidden>";

/// `GET /`: a small HTML page with download links and a filter form, grouped by area; only the
/// exports the caller may read, and a "copy signed link" button for a caller that may share.
pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = gate::caller(&state, &req, false).await?;
    // A token given in the address travels on in every link and form, or a browser user would
    // meet a 401 at the first click.
    let token = access::web_query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let (link_token, mut form_token) = match &token {
        Some(t) => {
            let encoded = serde_urlencoded::to_string([("token", t)]).unwrap_or_default();
            (
                format!("&amp;{encoded}"),
                format!(
                    "<input type=\"hidden\" name=\"token\" value=\"{}\">",
                    html_escape(t)
                ),
            )
        }
        None => (String::new(), String::new()),
    };
    let shares = token.is_some() && !matches!(caller, Caller::Open) && caller.allows(&Scope::Share);
    if shares {
        form_token.push_str(SHARE_BUTTON);
    }
    let now = Utc::now();
    let mut html = String::from(include_str!("index_head.html"));
    let exports: Vec<_> = state
        .served
        .exports()
        .into_iter()
        .filter(|r| caller.may_export(r))
        .collect();
    if exports.is_empty() {
        html.push_str("<p>No export is open to this key.</p>");
    }
    for area in catalogue::AREAS {
        let here: Vec<_> = exports.iter().filter(|r| r.area == *area).collect();
        if here.is_empty() {
            continue;
        }
        html.push_str(&format!("<h2>{}</h2>", html_escape(area)));
        for r in here {
            html.push_str(&section(&state, r, now, &link_token, &form_token));
        }
    }
    let first = link_token.replacen("&amp;", "?", 1);
    let mut status = match caller.allows(&Scope::Status) {
        true => format!(" · <a href=\"/status{first}\">/status</a>"),
        false => String::new(),
    };
    if caller.allows(&Scope::Feed) {
        status.push_str(&format!(
            " · <a href=\"/events{first}\">/events</a> (change feed)"
        ));
    }
    html.push_str(&format!(
        "<footer><p><a href=\"/exports{first}\">/exports</a> (JSON){status} · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/openapi.json{first}\">/openapi.json</a> · <a href=\"/asyncapi.json\">/asyncapi.json</a> (events)</p>\
         <p>Generated {}.</p></footer></body></html>",
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    ));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_and_states() {
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(45), "45 s ago");
        assert_eq!(ago(200), "3 min ago");
        assert_eq!(ago(5 * 3600), "5 h ago");
        assert_eq!(ago(3 * 86400), "3 d ago");
        let now = Utc::now();
        let polled = |secs_ago: i64, available: bool| PollStatus {
            last_success: Some(
                (now - chrono::TimeDelta::seconds(secs_ago))
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            available,
            ..Default::default()
        };
        let minute = Duration::from_secs(60);
        assert_eq!(
            freshness(&polled(170, true), minute, now).0,
            Freshness::Fresh
        );
        assert_eq!(
            freshness(&polled(190, true), minute, now).0,
            Freshness::Stale
        );
        assert_eq!(
            freshness(&polled(5, false), minute, now).0,
            Freshness::Unavailable
        );
        let never = PollStatus {
            available: true,
            ..Default::default()
        };
        assert_eq!(freshness(&never, minute, now), (Freshness::Stale, None));
        assert_eq!(
            html_escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
