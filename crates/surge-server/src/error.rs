//! The one JSON error shape of the HTTP edge.
//!
//! Every failure — extractor rejection, validation, database, timeout,
//! overload, panic — leaves the server as
//! `{"error": {"code": "...", "message": "...", "details": [...]}}` with a
//! stable machine-readable `code`. [`crate::middleware::json_errors`] turns any
//! non-JSON error response produced below the handlers (a framework 405, a
//! body-limit 413) into the same shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use surge_core::ErrorCategory;
use surge_queue::{BrokerError, SubmitError};
use surge_store::StoreError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`,
    /// `conflict`, `unauthorized`, `overloaded`, `timeout`,
    /// `database_unavailable`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// One entry per bad field, when the input was at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// A problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field (body key, query parameter or path segment).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error on its way to becoming a JSON response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// 400 `bad_request`: the request could not be read (e.g. malformed JSON).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 `validation_failed`, naming every bad field.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("invalid input: {}", fields.join(", ")),
        );
        e.details = details;
        e
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 `conflict` on `field`.
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(StatusCode::CONFLICT, "conflict", message.clone());
        e.details = vec![FieldError::new(field, message)];
        e
    }

    /// 401 `unauthorized` (with `WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 503 `overloaded` with `Retry-After`: shed by the concurrency limit.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is at its concurrency limit; retry shortly",
        )
        .retry_after(1)
    }

    /// 503 `timeout`: the request ran past the server's per-request timeout.
    pub fn timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request did not finish within {:.3}s",
                limit.as_secs_f64()
            ),
        )
        .retry_after(1)
    }

    /// 501 `not_supported`: the server's setup cannot do this (e.g.
    /// crawls on a SQLite broker).
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_supported", message)
    }

    /// 503 `broker_unavailable` with `Retry-After`.
    pub fn broker_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the task broker is unavailable; retry shortly",
        )
        .retry_after(1)
    }

    /// 500 `internal`: a bug; the details go to the log, not the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }

    /// An error for a bare status produced outside the handlers.
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "the request could not be read"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "missing or invalid bearer token"),
            StatusCode::NOT_FOUND => ("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed on this route")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request timed out"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "service unavailable"),
            s if s.is_client_error() => ("bad_request", "the request was rejected"),
            _ => ("internal", "internal server error"),
        };
        Self::new(status, code, message)
    }

    /// Adds a `Retry-After` header of `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The taxonomy category, recorded in metrics.
    pub fn category(&self) -> ErrorCategory {
        match self.code {
            "timeout" => ErrorCategory::Timeout,
            "conflict" | "not_found" => ErrorCategory::Business,
            "overloaded"
            | "not_supported"
            | "database_unavailable"
            | "broker_unavailable"
            | "unavailable"
            | "internal" => ErrorCategory::System,
            _ => ErrorCategory::Validation,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let category = self.category();
        let body = ErrorBody {
            error: ErrorObject {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"surge\""),
            );
        }
        resp.extensions_mut().insert(category);
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict { field } => {
                ApiError::conflict(field, format!("{field} is already in use"))
            }
            StoreError::Unavailable { .. } => {
                tracing::warn!(error = %e, "database unavailable");
                let secs = e.retry_after().map_or(1, |d| d.as_secs().max(1));
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry shortly",
                )
                .retry_after(secs)
            }
            other => {
                tracing::error!(error = %other, "database error");
                ApiError::internal()
            }
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Unavailable { retry_after, .. } => {
                tracing::warn!(error = %e, "broker unavailable");
                let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker_unavailable",
                    "the task broker is unavailable; retry shortly",
                )
                .retry_after(secs)
            }
            BrokerError::Invalid(message) => {
                ApiError::validation(vec![FieldError::new("body", message)])
            }
            other => {
                tracing::error!(error = %other, "broker error");
                ApiError::internal()
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Broker(b) => b.into(),
            SubmitError::Kind(k) => {
                ApiError::validation(vec![FieldError::new("kind", k.to_string())])
            }
            SubmitError::Schedule(s) => {
                ApiError::validation(vec![FieldError::new("cron", s.to_string())])
            }
            SubmitError::Invalid(m) => ApiError::validation(vec![FieldError::new("body", m)]),
        }
    }
}
