//! The safety net that keeps "every error is JSON" true.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Replaces the body of an error response that is not JSON (a framework
/// 405, a 413 from the body limit, a bare status from a layer) with the
/// standard error shape, keeping the status and headers such as
/// `Retry-After` and `Allow`.
pub(crate) fn ensure_json(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let fresh = ApiError::from_status(status).into_response();
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in &fresh_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    parts.extensions.extend(fresh_parts.extensions);
    Response::from_parts(parts, body)
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}
