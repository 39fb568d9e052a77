//! Crawls over HTTP: `POST /crawls` starts a crawl as queue work (a
//! `crawl` task, plus `crawl.join` tasks for more crawlers), `GET /crawls`
//! and `GET /crawls/{id}` show them, `GET /crawls/{id}/pages` streams the
//! records as JSON lines.
//!
//! The crawl lives in the broker (PostgreSQL or Redis): its id is the id
//! of its `crawl` task, so `GET /tasks/{id}` shows the task behind it.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use surge_crawl::crawls::{CrawlInfo, CrawlState, Crawls};
use surge_crawl::{CrawlConfig, FrontierError, FrontierStats};
use surge_queue::TaskId;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::tasks::uuid_param;
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{JsonObject, PathUuid, QueryParams, json_type};

const PAGE_DEFAULT: i64 = 50;
const PAGE_MAX: i64 = 500;
/// Records read from the broker per chunk of the JSONL stream.
const STREAM_CHUNK: usize = 500;
/// Most crawlers one crawl may ask for.
const MAX_WORKERS: u32 = 64;

/// What the crawl routes need: the broker's crawls and whether crawls may
/// reach private addresses (`--fetch-allow-private`).
#[derive(Debug, Clone)]
pub struct CrawlApi {
    crawls: Crawls,
    allow_private: bool,
}

impl CrawlApi {
    /// Crawls stored in `crawls`; private addresses only with
    /// `allow_private`.
    pub fn new(crawls: Crawls, allow_private: bool) -> CrawlApi {
        CrawlApi {
            crawls,
            allow_private,
        }
    }
}

fn frontier_error(e: FrontierError) -> ApiError {
    match e {
        FrontierError::NotFound(id) => ApiError::not_found(format!("crawl {id} not found")),
        FrontierError::Backend(m) => {
            tracing::warn!(error = %m, "crawl broker unavailable");
            ApiError::broker_unavailable()
        }
        other => {
            tracing::error!(error = %other, "crawl store error");
            ApiError::internal()
        }
    }
}

fn api(state: &AppState) -> ApiResult<&CrawlApi> {
    state.crawls.as_ref().ok_or_else(|| {
        ApiError::unsupported(
            "crawls need a PostgreSQL or Redis broker; this server's broker cannot hold them",
        )
    })
}

/// A crawl as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CrawlView {
    #[schema(value_type = String, format = Uuid)]
    id: Uuid,
    /// `running`, `finished` (the frontier ran empty or the page budget was
    /// reached) or `stopped` (the time budget ended).
    #[schema(value_type = String)]
    state: CrawlState,
    /// The settings it crawls with (as `POST /crawls` takes them).
    #[schema(value_type = Object)]
    config: CrawlConfig,
    /// The frontier's counts: `queued`, `leased`, `done` (records stored),
    /// `seen` (distinct URLs found).
    #[schema(value_type = Object)]
    stats: FrontierStats,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    /// Where its records are.
    pages: String,
}

async fn view(api: &CrawlApi, info: CrawlInfo) -> ApiResult<CrawlView> {
    let stats = api.crawls.stats(info.id).await.map_err(frontier_error)?;
    Ok(CrawlView {
        pages: format!("/crawls/{}/pages", info.id),
        id: info.id,
        state: info.state,
        config: info.config,
        stats,
        created_at: info.created_at,
        ended_at: info.ended_at,
    })
}

/// Body of `POST /crawls`: the crawl's settings, plus `workers`. Unknown
/// fields are refused; every bad field is named.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed by `parse_crawl`
pub(crate) struct StartCrawl {
    /// Where the crawl starts (absolute http(s) URLs, depth 0).
    start_urls: Vec<String>,
    /// Crawlers in all (1..=64, default 1): one `crawl` task plus
    /// `workers − 1` `crawl.join` tasks, run by the broker's workers.
    workers: Option<u32>,
    /// `{same_host, subdomains, allow, deny}` (regexes); default: the
    /// start URLs' hosts only.
    #[schema(value_type = Option<Object>)]
    scope: Option<Value>,
    /// Deepest depth crawled (start pages are depth 0).
    max_depth: Option<u32>,
    /// Page budget across every crawler.
    max_pages: Option<u64>,
    /// Time budget in seconds, counted from the crawl's creation.
    max_duration: Option<f64>,
    /// Fetches in flight per crawler (default 64).
    concurrency: Option<usize>,
    /// Fetches in flight to one host per crawler (default 8).
    per_host: Option<usize>,
    /// Seconds between two request starts to one host (default 0).
    min_delay: Option<f64>,
    user_agent: Option<String>,
    /// Obey robots.txt (default true).
    respect_robots: Option<bool>,
    /// Discover URLs from sitemaps (default false).
    sitemaps: Option<bool>,
    /// Include each page's outlinks in its record (default false).
    outlinks: Option<bool>,
    /// Query parameters removed before dedup (`utm_*` globs allowed).
    strip_query: Option<Vec<String>>,
    /// Largest body read (default 10 MiB).
    max_body_bytes: Option<u64>,
    /// Seconds one request may take (default 30).
    timeout: Option<f64>,
    /// Retries of a failed fetch (default 2).
    max_retries: Option<u32>,
    /// Crawl private, loopback and link-local addresses: refused unless
    /// the server runs with `--fetch-allow-private`.
    allow_private: Option<bool>,
}

/// What `POST /crawls` answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Started {
    crawl: CrawlView,
    /// The `crawl` task (the same id as the crawl).
    #[schema(value_type = String, format = Uuid)]
    task: TaskId,
    /// The `crawl.join` tasks the `crawl` task enqueues when it starts.
    joins: u32,
}

/// The config and worker count of a `POST /crawls` body, naming every bad
/// field.
fn parse_crawl(
    body: &Map<String, Value>,
    allow_private: bool,
) -> Result<(CrawlConfig, u32), Vec<FieldError>> {
    let mut errors = Vec::new();
    let defaults = match serde_json::to_value(CrawlConfig::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut merged = defaults.clone();
    let mut workers = 1;
    for (key, value) in body {
        if key == "workers" {
            match value.as_u64().and_then(|w| u32::try_from(w).ok()) {
                Some(w) if (1..=MAX_WORKERS).contains(&w) => workers = w,
                _ => errors.push(FieldError::new(
                    "workers",
                    format!("must be an integer from 1 to {MAX_WORKERS}"),
                )),
            }
            continue;
        }
        if !defaults.contains_key(key) {
            errors.push(FieldError::new(key.as_str(), "unknown field"));
            continue;
        }
        // Each field alone over the defaults, so each bad one is named.
        let mut alone = defaults.clone();
        alone.insert(key.clone(), value.clone());
        if let Err(e) = serde_json::from_value::<CrawlConfig>(Value::Object(alone)) {
            errors.push(FieldError::new(
                key.as_str(),
                format!("{e} (got {})", json_type(value)),
            ));
            continue;
        }
        merged.insert(key.clone(), value.clone());
    }
    if !body.contains_key("start_urls") {
        errors.push(FieldError::new("start_urls", "is required"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let config: CrawlConfig = serde_json::from_value(Value::Object(merged))
        .map_err(|e| vec![FieldError::new("body", e.to_string())])?;
    for (i, u) in config.start_urls.iter().enumerate() {
        let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            errors.push(FieldError::new(
                format!("start_urls[{i}]"),
                format!("{u:?} is not an absolute http(s) URL"),
            ));
        }
    }
    if config.allow_private && !allow_private {
        errors.push(FieldError::new(
            "allow_private",
            "this server does not let tasks reach private addresses (--fetch-allow-private)",
        ));
    }
    if let Some(d) = config.max_duration.filter(|d| d.is_zero()) {
        errors.push(FieldError::new(
            "max_duration",
            format!("must be more than 0 seconds, got {}", d.as_secs_f64()),
        ));
    }
    if errors.is_empty()
        && let Err(e) = config.validate()
    {
        // The engine's messages start with the setting's name.
        let text = e.to_string();
        let text = text.strip_prefix("invalid crawl config: ").unwrap_or(&text);
        let (field, message) = text.split_once(": ").unwrap_or(("body", text));
        errors.push(FieldError::new(field, message));
    }
    if errors.is_empty() {
        Ok((config, workers))
    } else {
        Err(errors)
    }
}

/// The next step of the JSONL stream.
enum Next {
    Chunk(Vec<(u64, String)>),
    Fail(String),
    Done,
}

/// Start a crawl.
#[utoipa::path(post, path = "/crawls", tag = "crawls", request_body = StartCrawl,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored and queued", body = Started, headers(("location" = String, description = "/crawls/{id}"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Bad settings: every one named; nothing stored", body = ErrorBody),
        (status = 501, description = "The server's broker cannot hold crawls (SQLite)", body = ErrorBody),
        (status = 503, description = "Broker unavailable", body = ErrorBody),
    ))]
pub(crate) async fn start(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let api = api(&state)?;
    let (config, workers) = parse_crawl(&body, api.allow_private).map_err(ApiError::validation)?;
    let client = state.queue.client();
    let mut task = client.task(
        "crawl",
        serde_json::json!({ "config": &config, "workers": workers }),
    )?;
    let id = task.id;
    // Stored now, so that it is listed at once; the task finds it there.
    api.crawls
        .create(id, &config)
        .await
        .map_err(frontier_error)?;
    task.max_retries = 5;
    client.submit(task).await?;
    let info = api
        .crawls
        .get(id)
        .await
        .map_err(frontier_error)?
        .ok_or_else(ApiError::internal)?;
    let crawl = view(api, info).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/crawls/{id}"))],
        Json(Started {
            crawl,
            task: id,
            joins: workers - 1,
        }),
    )
        .into_response())
}

/// Query of `GET /crawls`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsed by `QueryParams`
pub(crate) struct ListCrawls {
    /// Only crawls older than this id (the previous page's `next_before`).
    before: Option<String>,
    /// Page size, 1..=500 (default 50).
    limit: Option<i64>,
}

/// A page of crawls, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CrawlPage {
    items: Vec<CrawlView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[schema(value_type = Option<String>, format = Uuid)]
    next_before: Option<Uuid>,
}

/// List crawls, newest first.
#[utoipa::path(get, path = "/crawls", tag = "crawls", params(ListCrawls),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CrawlPage),
        (status = 422, description = "Bad page parameter", body = ErrorBody),
        (status = 501, description = "The server's broker cannot hold crawls", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<CrawlPage>> {
    let api = api(&state)?;
    let mut errors = Vec::new();
    let limit = query.int("limit", PAGE_DEFAULT, 1, PAGE_MAX, &mut errors);
    let before = uuid_param(&query, "before", &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let limit = usize::try_from(limit).unwrap_or(50);
    let mut infos = api
        .crawls
        .list(before, limit + 1)
        .await
        .map_err(frontier_error)?;
    let next_before = if infos.len() > limit {
        infos.truncate(limit);
        infos.last().map(|c| c.id)
    } else {
        None
    };
    let mut items = Vec::with_capacity(infos.len());
    for info in infos {
        items.push(view(api, info).await?);
    }
    Ok(Json(CrawlPage { items, next_before }))
}

/// One crawl: settings, counts, state.
#[utoipa::path(get, path = "/crawls/{id}", tag = "crawls",
    params(("id" = String, Path, description = "Crawl id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = CrawlView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    PathUuid(id): PathUuid,
) -> ApiResult<Json<CrawlView>> {
    let api = api(&state)?;
    let info = api
        .crawls
        .get(id)
        .await
        .map_err(frontier_error)?
        .ok_or_else(|| ApiError::not_found(format!("crawl {id} not found")))?;
    Ok(Json(view(api, info).await?))
}

/// The crawl's records as JSON lines (`application/x-ndjson`), in the
/// order they were stored, streamed from the broker in chunks (a crawl
/// still running streams what is stored so far). Each line is a
/// PageRecord: `url`, `final_url`, `status`, `depth`, `title`,
/// `description`, `content_type`, `content_length`, `links`, `images`,
/// `fetched_at`, `elapsed_ms`, `error` (`{kind, message}` or null), and
/// `outlinks` when the crawl records them.
#[utoipa::path(get, path = "/crawls/{id}/pages", tag = "crawls",
    params(("id" = String, Path, description = "Crawl id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One JSON record per line", content_type = "application/x-ndjson", body = String),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Not a UUID", body = ErrorBody),
    ))]
pub(crate) async fn pages(
    State(state): State<AppState>,
    PathUuid(id): PathUuid,
) -> ApiResult<Response> {
    let crawls = api(&state)?.crawls.clone();
    // The first chunk before the status line, so that an unknown crawl is
    // a 404 and not an empty 200.
    let first = crawls
        .pages(id, 0, STREAM_CHUNK)
        .await
        .map_err(frontier_error)?;
    let stream = futures_util::stream::unfold(Next::Chunk(first), move |next| {
        let crawls = crawls.clone();
        async move {
            match next {
                Next::Done => None,
                Next::Fail(message) => Some((Err(std::io::Error::other(message)), Next::Done)),
                Next::Chunk(chunk) if chunk.is_empty() => None,
                Next::Chunk(chunk) => {
                    let mut bytes =
                        Vec::with_capacity(chunk.iter().map(|(_, r)| r.len() + 1).sum());
                    for (_, record) in &chunk {
                        bytes.extend_from_slice(record.as_bytes());
                        bytes.push(b'\n');
                    }
                    let following = match chunk.last() {
                        Some((cursor, _)) if chunk.len() == STREAM_CHUNK => {
                            match crawls.pages(id, *cursor, STREAM_CHUNK).await {
                                Ok(rest) => Next::Chunk(rest),
                                Err(e) => {
                                    tracing::warn!(error = %e, crawl = %id, "page stream cut");
                                    // An error ends the body: the client sees a
                                    // cut response, not a silently short one.
                                    Next::Fail(e.to_string())
                                }
                            }
                        }
                        _ => Next::Done,
                    };
                    Some((Ok(Bytes::from(bytes)), following))
                }
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = parse_crawl(
            &obj(serde_json::json!({
                "start_urls": ["ftp://x/", "http://ok.test/"],
                "max_pages": "ten",
                "workers": 0,
                "colour": "blue",
                "allow_private": true,
            })),
            false,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields.len(), 3, "{errors:?}");
        for f in ["max_pages", "workers", "colour"] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        let errors = parse_crawl(
            &obj(serde_json::json!({
                "start_urls": ["ftp://x/", "http://ok.test/"],
                "allow_private": true,
            })),
            false,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["start_urls[0]", "allow_private"]);
        let errors = parse_crawl(&obj(serde_json::json!({})), false).unwrap_err();
        assert_eq!(errors[0].field, "start_urls");
    }

    #[test]
    fn a_good_body_keeps_defaults_for_the_rest() {
        let (config, workers) = parse_crawl(
            &obj(serde_json::json!({
                "start_urls": ["http://127.0.0.1:1/"],
                "max_depth": 2,
                "workers": 3,
                "allow_private": true,
            })),
            true,
        )
        .unwrap();
        assert_eq!(workers, 3);
        assert_eq!(config.max_depth, Some(2));
        assert!(config.allow_private);
        assert_eq!(config.concurrency, CrawlConfig::default().concurrency);
    }
}
