//! Extractors whose every rejection is an [`ApiError`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldError};

/// A JSON object body. 415 without a JSON content type, 413 over the body
/// limit, 400 when the JSON does not parse, 422 when it is not an object.
///
/// Bodies are read as untyped JSON so that validation can report every bad
/// field at once (typed deserialisation stops at the first).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::from_status(e.status()),
                _ => ApiError::bad_request(format!("could not read the body: {e}")),
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(other) => Err(ApiError::validation(vec![FieldError::new(
                "body",
                format!("must be a JSON object, not {}", json_type(&other)),
            )])),
            Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
        }
    }
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The query string as name → value (the last value wins). Parsing of each
/// parameter is left to the handler so that it can name the bad ones.
#[derive(Debug, Default)]
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(QueryParams(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

impl QueryParams {
    /// An integer parameter within `min..=max`, or `default` when absent;
    /// a problem is pushed onto `errors`.
    pub fn int(
        &self,
        name: &str,
        default: i64,
        min: i64,
        max: i64,
        errors: &mut Vec<FieldError>,
    ) -> i64 {
        let Some(raw) = self.0.get(name) else {
            return default;
        };
        match raw.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(_) => {
                errors.push(FieldError::new(
                    name,
                    format!("must be between {min} and {max}"),
                ));
                default
            }
            Err(_) => {
                errors.push(FieldError::new(
                    name,
                    format!("must be an integer, got {raw:?}"),
                ));
                default
            }
        }
    }

    /// A non-empty string parameter, if present.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|s| !s.is_empty()).cloned()
    }
}

/// A numeric `{id}` path segment; 422 naming `id` when it is not an integer.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        raw.parse::<i64>().map(PathId).map_err(|_| {
            ApiError::validation(vec![FieldError::new(
                "id",
                format!("must be an integer, got {raw:?}"),
            )])
        })
    }
}

/// A UUID path segment (`/tasks/{id}`); anything else is a 422 naming `id`.
#[derive(Debug, Clone, Copy)]
pub struct PathUuid(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathUuid {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()))?;
        raw.parse::<uuid::Uuid>().map(PathUuid).map_err(|_| {
            ApiError::validation(vec![FieldError::new(
                "id",
                format!("must be a UUID, got {raw:?}"),
            )])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let ok = |s: &'static str| is_json(Some(&header::HeaderValue::from_static(s)));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!is_json(None));
    }

    #[test]
    fn query_int_reports_the_field() {
        let q = QueryParams(HashMap::from([
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), "11".to_string()),
            ("c".to_string(), "7".to_string()),
        ]));
        let mut errors = Vec::new();
        assert_eq!(q.int("a", 1, 0, 10, &mut errors), 1);
        assert_eq!(q.int("b", 1, 0, 10, &mut errors), 1);
        assert_eq!(q.int("c", 1, 0, 10, &mut errors), 7);
        assert_eq!(q.int("d", 3, 0, 10, &mut errors), 3);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "b"]);
    }
}
