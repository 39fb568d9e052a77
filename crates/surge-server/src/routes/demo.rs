//! The seed services' simulated-I/O endpoints: `/api/data`, `/api/process`.

use std::time::Duration;

use axum::Json;
use axum::http::HeaderMap;
use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{JsonObject, QueryParams, json_type};

/// Longest simulated delay of `/api/data`, in milliseconds.
pub(crate) const MAX_DELAY_MS: i64 = 10_000;
/// Longest simulated processing of `/api/process`, in seconds.
pub(crate) const MAX_PROCESSING_SECS: f64 = 10.0;

/// Query of `/api/data`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsed by `QueryParams`
pub(crate) struct DataQuery {
    /// Milliseconds to wait, 0..=10000 (default 100).
    delay_ms: Option<i64>,
}

/// The answer of `/api/data`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DataResponse {
    /// When the answer was produced (RFC 3339).
    timestamp: String,
    /// The payload.
    data: String,
    /// This request's id (also the `x-request-id` header).
    request_id: String,
    /// How long the server waited.
    delay_ms: i64,
}

/// Simulated I/O: waits `delay_ms` without blocking anything else.
#[utoipa::path(get, path = "/api/data", tag = "demo", params(DataQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = DataResponse),
        (status = 422, description = "`delay_ms` is not an integer in range", body = ErrorBody),
    ))]
pub(crate) async fn data(headers: HeaderMap, query: QueryParams) -> ApiResult<Json<DataResponse>> {
    let mut errors = Vec::new();
    let delay_ms = query.int("delay_ms", 100, 0, MAX_DELAY_MS, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    tokio::time::sleep(Duration::from_millis(delay_ms.unsigned_abs())).await;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(Json(DataResponse {
        timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        data: format!("data for request {request_id}"),
        request_id,
        delay_ms,
    }))
}

/// Body of `/api/process`: `processing_time` plus any other fields.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed from `JsonObject`
pub(crate) struct ProcessRequest {
    /// Seconds to work, 0..=10 (default 0.5).
    processing_time: Option<f64>,
    /// Any other fields are echoed back.
    #[schema(additional_properties)]
    payload: Option<Map<String, Value>>,
}

/// The answer of `/api/process`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProcessResponse {
    /// Always `success`.
    status: &'static str,
    /// The request body, as received.
    processed_data: Map<String, Value>,
    /// When processing finished (RFC 3339).
    completed_at: String,
    /// Seconds spent.
    processing_time: f64,
}

/// Simulated processing: waits `processing_time` seconds, echoes the body.
#[utoipa::path(post, path = "/api/process", tag = "demo", request_body = ProcessRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ProcessResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`processing_time` not a number in range", body = ErrorBody),
    ))]
pub(crate) async fn process(JsonObject(body): JsonObject) -> ApiResult<Json<ProcessResponse>> {
    let processing_time = match body.get("processing_time") {
        None => 0.5,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=MAX_PROCESSING_SECS).contains(&t) => t,
            _ => {
                return Err(bad_time(format!(
                    "must be between 0 and {MAX_PROCESSING_SECS}"
                )));
            }
        },
        Some(other) => {
            return Err(bad_time(format!(
                "must be a number, not {}",
                json_type(other)
            )));
        }
    };
    tokio::time::sleep(Duration::from_secs_f64(processing_time)).await;
    Ok(Json(ProcessResponse {
        status: "success",
        processed_data: body,
        completed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        processing_time,
    }))
}

fn bad_time(message: String) -> ApiError {
    ApiError::validation(vec![FieldError::new("processing_time", message)])
}
