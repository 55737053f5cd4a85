//! Export endpoints: `GET /exports/{resource}.{csv|xlsx}` and `GET /exports` (the `GET /` page
//! is in `index.rs`).

use std::time::Instant;

use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::conditional::Validators;
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
        .map_err(|e| ApiError::Internal(e.to_string()))??;
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

/// The rows, from the snapshot when [`reads_snapshot`] said so (`from_snapshot`); a live read's
/// first page must arrive before the answer starts, so an outage is a 503.
async fn rows(state: &AppState, q: &ExportQuery, from_snapshot: bool) -> Result<Rows, ApiError> {
    if from_snapshot {
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
fn provenance(
    state: &AppState,
    q: &ExportQuery,
    from_snapshot: bool,
) -> Vec<(&'static str, String)> {
    match from_snapshot {
        false => vec![("X-Data-Source", "live".into())],
        true => {
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

fn record_export(
    state: &AppState,
    q: &ExportQuery,
    format: Format,
    rows: u64,
    started: Instant,
    result: &Result<u64, ExportError>,
) {
    // The export's buffers are free now: hand them back, so a burst does not stay in RSS.
    crate::memory::release();
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
    let from_snapshot = reads_snapshot(&state, &q).await?;
    let validators = match from_snapshot {
        true => snapshot_validators(&state, &q, format, &pairs).await?,
        false => None,
    };
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    };
    let answer = |mut builder: actix_web::HttpResponseBuilder| {
        for h in provenance(&state, &q, from_snapshot) {
            builder.insert_header(h);
        }
        for h in validators.iter().flat_map(Validators::headers) {
            builder.insert_header(h);
        }
        builder
    };
    if let Some(v) = validators.as_ref().filter(|v| v.not_modified(&req)) {
        tracing::debug!(resource = %resource.name, etag = %v.etag, "Export not modified");
        return Ok(answer(HttpResponse::NotModified()).finish());
    }
    if req.method() == actix_web::http::Method::HEAD {
        // What a GET would answer, without building the file.
        return Ok(answer(HttpResponse::Ok())
            .content_type(content_type)
            .insert_header(disposition)
            .finish());
    }
    match format {
        Format::Csv => {
            let rows = rows(&state, &q, from_snapshot).await?;
            let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
            let st = state.get_ref().clone();
            let mut response = answer(HttpResponse::Ok());
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
            Ok(response
                .content_type(content_type)
                .insert_header(disposition)
                .streaming(ReceiverStream::new(rx)))
        }
        Format::Xlsx => {
            let mut response = answer(HttpResponse::Ok());
            let st = state.get_ref().clone();
            let build = || async move { build_xlsx(st, q, from_snapshot, started).await };
            let tmp = match &validators {
                // Identical requests of one snapshot version share one build.
                Some(v) => match state
                    .xlsx_shared
                    .get_or_build(&v.etag, || async {
                        build().await.map_err(|e| e.to_string())
                    })
                    .await
                {
                    (Ok(tmp), _) => tmp,
                    (Err(e), _) => return Err(ApiError::Internal(e)),
                },
                None => std::sync::Arc::new(build().await.map_err(|e| match e {
                    ExportError::Upstream(e) => ApiError::Unavailable {
                        message: e.to_string(),
                        retry_after: RETRY_AFTER_SECS,
                    },
                    other => ApiError::Internal(other.to_string()),
                })?),
            };
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
            Ok(response
                .content_type(content_type)
                .insert_header(disposition)
                .no_chunking(len)
                .streaming(tokio_util::io::ReaderStream::new(file)))
        }
    }
}

/// The validators of a snapshot export, once its resource has a snapshot version.
async fn snapshot_validators(
    state: &AppState,
    q: &ExportQuery,
    format: Format,
    pairs: &[(String, String)],
) -> Result<Option<Validators>, ApiError> {
    let store = state.store.clone();
    let source = &q.resource.source().name;
    let version = web::block(move || store.snapshot_version(source))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(version.map(|v| Validators::new(v, &q.resource.name, format, pairs)))
}

/// Builds the workbook of `q` into a temporary file on a worker thread, holding one of the
/// `EXPORT_MAX_XLSX_BUILDS` permits.
async fn build_xlsx(
    state: AppState,
    q: ExportQuery,
    from_snapshot: bool,
    started: Instant,
) -> Result<tempfile::NamedTempFile, ExportError> {
    let permit = state
        .xlsx_builds
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?;
    let rows = rows(&state, &q, from_snapshot).await.map_err(|e| match e {
        ApiError::Unavailable { message, .. } => {
            ExportError::Upstream(crate::daftra::FetchError::Transport(message))
        }
        other => ExportError::Io(std::io::Error::other(other.to_string())),
    })?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let tmp = tempfile::NamedTempFile::new()?;
        let mut sink = XlsxSink::new(tmp.path(), &q.resource.name);
        let written = export::write_rows(rows, &q, &mut sink);
        let truncated = sink.truncated;
        let result = written.and_then(|n| sink.save(q.columns.len()).map(|_| n));
        if truncated > 0 {
            state
                .metrics
                .export_cells_truncated
                .with_label_values(&[&q.resource.name])
                .inc_by(truncated);
            tracing::warn!(resource = %q.resource.name, cells = truncated,
                "XLSX cells cut at Excel's 32,767-character limit (the CSV has them whole)");
        }
        record_export(
            &state,
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
    .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?
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
pub(super) fn enabled_exports(state: &AppState) -> Vec<&'static Resource> {
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
