//! Export endpoints: `GET /exports/{resource}.{csv|xlsx}` and `GET /exports` (the `GET /` page
//! is in `index.rs`).

use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_stream::wrappers::ReceiverStream;

use super::conditional::Validators;
use super::gate::{self, Caller};
use super::{ApiError, AppState, Invalid};
use crate::access::{links, Scope};
use crate::catalogue::{self, ColumnKind, Resource};
use crate::export::csv::ChannelWriter;
use crate::export::{self, ExportError, ExportJob, ExportQuery, Format, Output, Rows, Source};
use crate::feed::Feed;

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

/// The export named by `file` (`{name}.{csv|xlsx}`), the feed it reads, and its format; 404
/// with a hint otherwise.
fn resolve<'s>(
    state: &'s AppState,
    file: &str,
) -> Result<(&'s Feed, &'static Resource, Format), ApiError> {
    let (name, ext) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::NotFound(format!(
            "no export named {file:?}; add .csv, .xlsx, .jsonl or .parquet (GET /exports lists them)"
        ))
    })?;
    let (feed, resource) = state.served.export(name).ok_or_else(|| {
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
    let format = Format::parse(ext).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no format {ext:?}; use csv, xlsx, jsonl or parquet"
        ))
    })?;
    Ok((feed, resource, format))
}

/// One export request, resolved and validated.
struct Request {
    feed: Feed,
    job: ExportJob,
    /// The query's pairs as given (the validators hash them).
    pairs: Vec<(String, String)>,
}

impl Request {
    /// `file` asked by `caller`; a signed link's `expires` and `sig` are not the export's.
    fn parse(
        state: &AppState,
        req: &HttpRequest,
        file: &str,
        caller: &Caller,
    ) -> Result<Request, ApiError> {
        let (feed, resource, format) = resolve(state, file)?;
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
            .map_err(|e| Invalid::new("query", e.to_string()))?;
        if caller.is_link() {
            pairs.retain(|(k, _)| k != links::EXPIRES && k != links::SIG);
        }
        let query = ExportQuery::parse(resource, &pairs)?;
        Ok(Request {
            feed: feed.clone(),
            job: ExportJob::new(query, format, feed.account.clock)?,
            pairs,
        })
    }

    fn query(&self) -> &ExportQuery {
        &self.job.query
    }
}

/// Whether the export reads the snapshot: `Ok(true)` once a baseline exists (unless
/// `source=live`), `Ok(false)` to read Daftra live, and a 503 for an explicit `source=snapshot`
/// before the first snapshot.
async fn reads_snapshot(state: &AppState, r: &Request) -> Result<bool, ApiError> {
    let (store, key) = (state.store.clone(), r.feed.key().to_string());
    let has_snapshot = web::block(move || store.has_baseline(&key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let q = r.query();
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
async fn rows(state: &AppState, r: &Request, from_snapshot: bool) -> Result<Rows, ApiError> {
    if from_snapshot {
        return Ok(Rows::Snapshot {
            store: state.store.clone(),
            key: r.feed.key().to_string(),
        });
    }
    // Not read from the snapshot: with the default source that means there is none yet.
    let has_snapshot = r.query().source == Source::Live;
    // Refused credentials are known: say which variables to check, without asking Daftra.
    if let Some(refused) = r.feed.account.client.credentials().refusal() {
        return Err(ApiError::Unavailable {
            message: format!(
                "Daftra refuses the account's credentials (HTTP {} since {}): check {}",
                refused.status,
                refused.since,
                refused.check.join(", ")
            ),
            retry_after: RETRY_AFTER_SECS,
        });
    }
    let observer = std::sync::Arc::new(state.metrics.clone());
    Rows::live(&r.feed.account, r.query().resource, observer)
        .await
        .map_err(|e| ApiError::Unavailable {
            message: format!(
                "{}Daftra could not be read: {e}",
                if has_snapshot {
                    ""
                } else {
                    "no snapshot yet and "
                }
            ),
            retry_after: RETRY_AFTER_SECS,
        })
}

/// Where the rows come from: `X-Data-Source: snapshot|live`, and for a snapshot the end of the
/// last successful poll (`X-Snapshot-Polled-At`, RFC 3339) when this process has seen one, so a
/// stale file can be told from a fresh one.
fn provenance(state: &AppState, feed: &Feed, from_snapshot: bool) -> Vec<(&'static str, String)> {
    match from_snapshot {
        false => vec![("X-Data-Source", "live".into())],
        true => {
            let mut h = vec![("X-Data-Source", "snapshot".into())];
            if let Some(at) = state
                .health
                .status
                .get(feed.key())
                .and_then(|s| s.last_success)
            {
                h.push(("X-Snapshot-Polled-At", at));
            }
            h
        }
    }
}

/// `GET /exports/{resource}.{csv|xlsx}`: 304 when the client holds this snapshot version, the
/// headers alone for HEAD, else the file (CSV streamed, XLSX built into a temporary file).
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = file.rsplit_once('.').map_or(file.as_str(), |(n, _)| n);
    let caller = gate::require(&state, &req, Scope::Export(name.to_string())).await?;
    let r = Request::parse(&state, &req, &file, &caller)?;
    let format = r.job.format;
    let disposition = content_disposition(&export::file_name(r.query().resource, format));
    let from_snapshot = reads_snapshot(&state, &r).await?;
    let validators = match from_snapshot {
        true => snapshot_validators(&state, &r).await?,
        false => None,
    };
    let answer = |mut builder: actix_web::HttpResponseBuilder| {
        for h in provenance(&state, &r.feed, from_snapshot) {
            builder.insert_header(h);
        }
        for h in validators.iter().flat_map(Validators::headers) {
            builder.insert_header(h);
        }
        builder.content_type(format.content_type());
        builder.insert_header(disposition.clone());
        builder
    };
    if let Some(v) = validators.as_ref().filter(|v| v.not_modified(&req)) {
        tracing::debug!(resource = %r.query().resource.name, etag = %v.etag, "Export not modified");
        let mut not_modified = HttpResponse::NotModified();
        for h in provenance(&state, &r.feed, from_snapshot) {
            not_modified.insert_header(h);
        }
        for h in v.headers() {
            not_modified.insert_header(h);
        }
        return Ok(not_modified.finish());
    }
    if req.method() == actix_web::http::Method::HEAD {
        // What a GET would answer, without building the file.
        // No body and no `Content-Length: 0`: the length of a GET is not known before it runs.
        return Ok(answer(HttpResponse::Ok()).body(actix_web::body::None::new()));
    }
    let permit = caller.export_permit(&state)?;
    let response = answer(HttpResponse::Ok());
    match format.streams() {
        true => stream(&state, r, from_snapshot, response, permit).await,
        false => send_built(&state, r, from_snapshot, validators, response, permit).await,
    }
}

/// Streams the CSV or JSON Lines as it is written: the body ends with an error (a broken
/// download, never a short file) when the export fails midway.
async fn stream(
    state: &AppState,
    r: Request,
    from_snapshot: bool,
    mut response: actix_web::HttpResponseBuilder,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<HttpResponse, ApiError> {
    let rows = rows(state, &r, from_snapshot).await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let metrics = state.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let output = Output::of(
            r.job.format,
            Box::new(ChannelWriter::new(tx)),
            Default::default(),
        );
        if let Err(e) = r.job.run(rows, output, &metrics) {
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok(response.streaming(holding(ReceiverStream::new(rx), permit)))
}

/// Builds the workbook or Parquet file (shared by identical requests of one snapshot version)
/// and sends it with its length.
async fn send_built(
    state: &AppState,
    r: Request,
    from_snapshot: bool,
    validators: Option<Validators>,
    mut response: actix_web::HttpResponseBuilder,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<HttpResponse, ApiError> {
    let st = state.clone();
    let build = || async move { build_file(st, r, from_snapshot).await };
    let tmp = match &validators {
        Some(v) => match state
            .exports
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
        .no_chunking(len)
        .streaming(holding(tokio_util::io::ReaderStream::new(file), permit)))
}

/// `body`, keeping the caller's export slot until the last byte is sent (or the client leaves).
fn holding<S: futures::Stream + Unpin>(
    body: S,
    permit: Option<OwnedSemaphorePermit>,
) -> impl futures::Stream<Item = S::Item> {
    use futures::StreamExt;
    body.map(move |chunk| {
        let _held = &permit;
        chunk
    })
}

/// The validators of a snapshot export, once its feed has a snapshot version.
async fn snapshot_validators(
    state: &AppState,
    r: &Request,
) -> Result<Option<Validators>, ApiError> {
    let (store, key) = (state.store.clone(), r.feed.key().to_string());
    let version = web::block(move || store.snapshot_version(&key))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(version.map(|v| Validators::new(v, &r.query().resource.name, r.job.format, &r.pairs)))
}

/// Builds the file of `r` (XLSX or Parquet) into a temporary file on a worker thread, holding
/// one of the `EXPORT_MAX_XLSX_BUILDS` permits.
async fn build_file(
    state: AppState,
    r: Request,
    from_snapshot: bool,
) -> Result<tempfile::NamedTempFile, ExportError> {
    let permit = state
        .exports
        .xlsx_builds
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))?;
    let rows = rows(&state, &r, from_snapshot).await.map_err(|e| match e {
        ApiError::Unavailable { message, .. } => {
            ExportError::Upstream(crate::daftra::FetchError::Transport(message))
        }
        other => ExportError::Io(std::io::Error::other(other.to_string())),
    })?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let tmp = tempfile::NamedTempFile::new()?;
        let output = Output::of(
            r.job.format,
            Box::new(std::io::sink()),
            tmp.path().to_path_buf(),
        );
        r.job.run(rows, output, &state.metrics)?;
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
        "formats": Format::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
        "urls": Format::ALL.iter().map(|f| (f.as_str().to_string(), json!(format!("/exports/{}.{}", r.name, f.as_str())))).collect::<serde_json::Map<_, _>>(),
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

/// `GET /exports`: the available exports, formats, columns and filters (JSON).
/// Only the exports the caller may read are listed.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = gate::caller(&state, &req, false).await?;
    let exports: Vec<_> = state
        .served
        .exports()
        .into_iter()
        .filter(|r| caller.may_export(r))
        .map(describe)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "exports": exports })))
}
