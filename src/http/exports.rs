//! Export endpoints: `GET /exports/{resource}.{csv|xlsx}`, `GET /exports` and the `GET /` page.

use std::time::Instant;

use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{access, ApiError, AppState};
use crate::catalogue::{self, ColumnKind, Resource};
use crate::export::csv::{ChannelWriter, CsvSink};
use crate::export::xlsx::XlsxSink;
use crate::export::{self, ExportError, ExportQuery, Format, QueryError, Rows, Source};

/// Seconds a client is told to wait when Daftra cannot be read.
const RETRY_AFTER_SECS: u64 = 30;

/// `attachment; filename="name"; filename*=UTF-8''name` (RFC 6266 and RFC 5987), with quotes,
/// control characters and non-ASCII left out of the plain `filename`.
pub fn content_disposition(name: &str) -> ContentDisposition {
    let ascii: String = name
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && !matches!(c, '"' | '\\' | '/'))
        .collect();
    let clean: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/'))
        .collect();
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![
            DispositionParam::Filename(ascii),
            DispositionParam::FilenameExt(ExtendedValue {
                charset: Charset::Ext("UTF-8".into()),
                language_tag: None,
                value: clean.into_bytes(),
            }),
        ],
    }
}

fn resolve(state: &AppState, file: &str) -> Result<(&'static Resource, Format), ApiError> {
    let (name, ext) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::NotFound(format!(
            "no export named {file:?}; add .csv or .xlsx (GET /exports lists them)"
        ))
    })?;
    let resource = state.export(name).ok_or_else(|| {
        let hint = match catalogue::export_by_name(name) {
            Some(r) => format!(
                "{:?} is not enabled; add {:?} to DAFTRA_RESOURCES",
                name,
                r.source().name
            ),
            None => format!("no export named {name:?}; GET /exports lists them"),
        };
        ApiError::NotFound(hint)
    })?;
    let format = Format::parse(ext)
        .ok_or_else(|| ApiError::NotFound(format!("no format {ext:?}; use csv or xlsx")))?;
    Ok((resource, format))
}

/// Whether the export reads the snapshot: `Ok(true)` once a baseline exists (unless
/// `source=live`), `Ok(false)` to read Daftra live, and a 503 for an explicit `source=snapshot`
/// before the first snapshot.
async fn reads_snapshot(state: &AppState, q: &ExportQuery) -> Result<bool, ApiError> {
    let store = state.store.clone();
    let name = &q.resource.source().name;
    let has_snapshot = web::block(move || store.has_baseline(name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if q.source == Source::Snapshot && has_snapshot {
        return Ok(true);
    }
    if q.source == Source::Snapshot && q.source_given {
        return Err(ApiError::Unavailable {
            message: format!(
                "no snapshot of {} yet (the first poll has not finished); retry later, or ask for source=live",
                q.resource.source().name
            ),
            retry_after: RETRY_AFTER_SECS,
        });
    }
    Ok(false)
}

/// Picks the row source (see [`reads_snapshot`]); a live read's first page must arrive before
/// the answer starts, so an outage is a 503.
async fn rows(state: &AppState, q: &ExportQuery) -> Result<Rows, ApiError> {
    if reads_snapshot(state, q).await? {
        return Ok(Rows::Snapshot(state.store.clone()));
    }
    // Not read from the snapshot: with the default source that means there is none yet.
    let has_snapshot = q.source == Source::Live;
    let mut rest = export::live_pages(state.client.clone(), q.resource, state.metrics.clone());
    match rest.recv().await {
        Some(Ok(first)) => Ok(Rows::Live {
            first: Some(first),
            rest,
        }),
        Some(Err(e)) => Err(ApiError::Unavailable {
            message: format!(
                "{}Daftra could not be read: {e}",
                if has_snapshot {
                    ""
                } else {
                    "no snapshot yet and "
                }
            ),
            retry_after: RETRY_AFTER_SECS,
        }),
        None => Ok(Rows::Live { first: None, rest }),
    }
}

/// Where the rows come from: `X-Data-Source: snapshot|live`, and for a snapshot the end of the
/// last successful poll (`X-Snapshot-Polled-At`, RFC 3339) when this process has seen one, so a
/// stale file can be told from a fresh one.
fn provenance(state: &AppState, q: &ExportQuery, rows: &Rows) -> Vec<(&'static str, String)> {
    match rows {
        Rows::Live { .. } => vec![("X-Data-Source", "live".into())],
        Rows::Snapshot(_) => {
            let mut h = vec![("X-Data-Source", "snapshot".into())];
            if let Some(at) = state
                .status
                .snapshot()
                .get(&q.resource.source().name)
                .and_then(|s| s.last_success.clone())
            {
                h.push(("X-Snapshot-Polled-At", at));
            }
            h
        }
    }
}

fn with_provenance(
    mut builder: actix_web::HttpResponseBuilder,
    headers: Vec<(&'static str, String)>,
) -> actix_web::HttpResponseBuilder {
    for h in headers {
        builder.insert_header(h);
    }
    builder
}

fn record_export(
    state: &AppState,
    q: &ExportQuery,
    format: Format,
    rows: u64,
    started: Instant,
    result: &Result<u64, ExportError>,
) {
    let labels = [q.resource.name.as_str(), format.as_str()];
    state
        .metrics
        .export_rows
        .with_label_values(&labels)
        .inc_by(rows);
    state
        .metrics
        .export_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(n) => tracing::info!(
            resource = q.resource.name,
            format = format.as_str(),
            rows = n,
            duration_ms = started.elapsed().as_millis() as u64,
            "Export served"
        ),
        Err(e) => {
            tracing::warn!(resource = q.resource.name, format = format.as_str(), error = %e, "Export stopped")
        }
    }
}

/// `GET /exports/{resource}.{csv|xlsx}`.
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    access::check(&state, &req)?;
    let (resource, format) = resolve(&state, &file)?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).map_err(|e| {
            ApiError::InvalidQuery(QueryError {
                field: "query".into(),
                message: e.to_string(),
            })
        })?;
    let q = ExportQuery::parse(resource, &pairs).map_err(ApiError::InvalidQuery)?;
    if format == Format::Xlsx && q.bom {
        return Err(ApiError::InvalidQuery(QueryError {
            field: "bom".into(),
            message: "applies to CSV only".into(),
        }));
    }
    let started = Instant::now();
    let disposition = content_disposition(&export::file_name(resource, format));
    if req.method() == actix_web::http::Method::HEAD {
        // What a GET would answer, without building the file.
        let from = if reads_snapshot(&state, &q).await? {
            "snapshot"
        } else {
            "live"
        };
        let content_type = match format {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        };
        return Ok(HttpResponse::Ok()
            .content_type(content_type)
            .insert_header(disposition)
            .insert_header(("X-Data-Source", from))
            .finish());
    }
    match format {
        Format::Csv => {
            let rows = rows(&state, &q).await?;
            let provenance = provenance(&state, &q, &rows);
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
            let st = state.get_ref().clone();
            tokio::task::spawn_blocking(move || {
                let err_tx = tx.clone();
                let result = CsvSink::new(ChannelWriter::new(tx), q.bom)
                    .map_err(ExportError::from)
                    .and_then(|mut sink| export::write_rows(rows, &q, &mut sink));
                let n = *result.as_ref().unwrap_or(&0);
                record_export(&st, &q, Format::Csv, n, started, &result);
                if let Err(e) = result {
                    // Ends the body with an error, so the client sees a broken download, not a short file.
                    let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
            Ok(with_provenance(HttpResponse::Ok(), provenance)
                .content_type("text/csv; charset=utf-8")
                .insert_header(disposition)
                .streaming(ReceiverStream::new(rx)))
        }
        Format::Xlsx => {
            let permit = state
                .xlsx_builds
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let rows = rows(&state, &q).await?;
            let provenance = provenance(&state, &q, &rows);
            let st = state.get_ref().clone();
            let built = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let tmp = tempfile::NamedTempFile::new()?;
                let mut sink = XlsxSink::new(tmp.path(), &q.resource.name);
                let written = export::write_rows(rows, &q, &mut sink);
                let truncated = sink.truncated;
                let result = written.and_then(|n| sink.save(q.columns.len()).map(|_| n));
                if truncated > 0 {
                    st.metrics
                        .export_cells_truncated
                        .with_label_values(&[&q.resource.name])
                        .inc_by(truncated);
                    tracing::warn!(resource = %q.resource.name, cells = truncated,
                        "XLSX cells cut at Excel's 32,767-character limit (the CSV has them whole)");
                }
                record_export(
                    &st,
                    &q,
                    Format::Xlsx,
                    *result.as_ref().unwrap_or(&0),
                    started,
                    &result,
                );
                result?;
                Ok::<_, ExportError>(tmp)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            let tmp = built.map_err(|e| match e {
                ExportError::Upstream(e) => ApiError::Unavailable {
                    message: e.to_string(),
                    retry_after: RETRY_AFTER_SECS,
                },
                other => ApiError::Internal(other.to_string()),
            })?;
            // The open handle keeps the data readable after the temporary file is unlinked.
            let file = tokio::fs::File::open(tmp.path())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let len = file
                .metadata()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .len();
            drop(tmp);
            Ok(with_provenance(HttpResponse::Ok(), provenance)
                .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
                .insert_header(disposition)
                .no_chunking(len)
                .streaming(tokio_util::io::ReaderStream::new(file)))
        }
    }
}

fn describe(r: &Resource) -> serde_json::Value {
    let dates: Vec<_> = r
        .columns
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Date | ColumnKind::Timestamp))
        .flat_map(|c| [format!("{}_from", c.name), format!("{}_to", c.name)])
        .collect();
    let enums: serde_json::Map<String, serde_json::Value> = r
        .enum_columns()
        .map(|c| {
            let values = c
                .labels
                .iter()
                .filter_map(|(v, l)| v.map(|v| json!({"value": v, "label": l})))
                .collect::<Vec<_>>();
            (c.name.clone(), json!(values))
        })
        .collect();
    json!({
        "resource": r.name,
        "title": r.title,
        "area": r.area,
        "line_items_of": r.parent.as_ref().map(|(p, _)| p),
        "group": r.parent.as_ref().map(|(_, g)| g),
        "formats": ["csv", "xlsx"],
        "urls": {"csv": format!("/exports/{}.csv", r.name), "xlsx": format!("/exports/{}.xlsx", r.name)},
        "columns": r.columns.iter().map(|c| json!({"name": c.name, "kind": format!("{:?}", c.kind).to_lowercase()})).collect::<Vec<_>>(),
        "filters": {
            "fields": "comma-separated columns, in output order",
            "enums": enums,
            "status": r.column("status").filter(|c| !c.labels.is_empty()).map(|c| c.labels.iter().filter_map(|(n, l)| n.map(|n| json!({"value": n, "label": l}))).collect::<Vec<_>>()),
            "equals": r.id_filters().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "date_ranges": dates,
            "sort": "a column, or -column for descending (default: the key ascending)",
            "bom": "true to start the CSV with a UTF-8 byte order mark (for Excel)",
            "source": ["snapshot", "live"],
        }
    })
}

/// Every enabled export: each resource followed by its line-item exports.
fn enabled_exports(state: &AppState) -> Vec<&'static Resource> {
    state
        .resources
        .iter()
        .flat_map(|r| std::iter::once(*r).chain(catalogue::line_item_exports(r)))
        .collect()
}

/// `GET /exports`: the available exports, formats, columns and filters (JSON).
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    access::check(&state, &req)?;
    Ok(HttpResponse::Ok().json(
        json!({"exports": enabled_exports(&state).into_iter().map(describe).collect::<Vec<_>>()}),
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `GET /`: a small HTML page with download links and a filter form, grouped by area.
pub async fn index(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    access::check(&state, &req)?;
    // A token given in the address travels on in every link and form, or a browser user would
    // meet a 401 at the first click.
    let token = access::web_query_pairs(&req)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let (link_token, form_token) = match &token {
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
    let mut html = String::from(include_str!("index_head.html"));
    let exports = enabled_exports(&state);
    for area in catalogue::AREAS {
        let here: Vec<_> = exports.iter().filter(|r| r.area == *area).collect();
        if here.is_empty() {
            continue;
        }
        html.push_str(&format!("<h2>{area}</h2>"));
        for r in here {
            let cols: String = r
                .columns
                .iter()
                .map(|c| format!("<code>{}</code> ", c.name))
                .collect();
            let level = if r.parent.is_some() { "h4" } else { "h3" };
            let enum_inputs: String = r
                .enum_columns()
                .map(|c| {
                    format!(
                        "<label>{n} <input name=\"{n}\" placeholder=\"{p}\"></label> ",
                        n = c.name,
                        p = html_escape(
                            &c.distinct_labels()
                                .iter()
                                .take(2)
                                .map(|l| l.to_lowercase())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    )
                })
                .collect();
            let date_inputs: String = r
                .columns
                .iter()
                .filter(|c| c.name == "created" || c.name == "date")
                .map(|c| {
                    format!(
                        "<label>{n}_from <input name=\"{n}_from\" type=\"date\"></label> \
                         <label>{n}_to <input name=\"{n}_to\" type=\"date\"></label> ",
                        n = c.name
                    )
                })
                .collect();
            html.push_str(&format!(
                "<{level}>{title} <small><code>{n}</code></small></{level}><p><a href=\"/exports/{n}.csv?bom=true{link_token}\">CSV (Excel)</a> · <a href=\"/exports/{n}.csv?source=snapshot{link_token}\">CSV</a> · \
                 <a href=\"/exports/{n}.xlsx?source=snapshot{link_token}\">XLSX</a></p><details><summary>Columns and filters</summary><p>{cols}</p>\
                 <form action=\"/exports/{n}.csv\" method=\"get\">{form_token}<label>format <select onchange=\"this.form.action='/exports/{n}.'+this.value\">\
                 <option>csv</option><option>xlsx</option></select></label> \
                 {enum_inputs}{date_inputs}<label>sort <input name=\"sort\" placeholder=\"-{key}\"></label> \
                 <button>Download</button></form></details>",
                n = r.name,
                title = html_escape(&r.title),
                key = r.key,
            ));
        }
    }
    let first = link_token.replacen("&amp;", "?", 1);
    html.push_str(&format!("<p><a href=\"/exports{first}\">/exports</a> (JSON) · <a href=\"/status{first}\">/status</a> · <a href=\"/metrics\">/metrics</a></p></body></html>"));
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}
