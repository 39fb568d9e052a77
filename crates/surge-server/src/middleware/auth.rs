//! Bearer-token access control.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The configured API token.
#[derive(Clone)]
pub(crate) struct ApiToken(pub(crate) Arc<str>);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`; the
/// comparison takes the same time whatever the presented token shares with
/// the real one.
pub(crate) async fn require_bearer(
    State(token): State<ApiToken>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(p) if bool::from(p.as_bytes().ct_eq(token.0.as_bytes())) => next.run(req).await,
        Some(_) => ApiError::unauthorized("invalid bearer token").into_response(),
        None => {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into_response()
        }
    }
}
