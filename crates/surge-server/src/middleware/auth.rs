//! Bearer-token access control.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
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

/// What a request presented, checked against the token.
pub(crate) enum Presented {
    /// The right token.
    Valid,
    /// No `Authorization: Bearer` header.
    Missing,
    /// A wrong token: the 401 to answer.
    Invalid(ApiError),
}

impl ApiToken {
    /// Checks `Authorization: Bearer <token>` in `headers`; the comparison
    /// takes the same time whatever the presented token shares with the real
    /// one.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Presented {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match presented {
            Some(p) if bool::from(p.as_bytes().ct_eq(self.0.as_bytes())) => Presented::Valid,
            Some(_) => Presented::Invalid(ApiError::unauthorized("invalid bearer token")),
            None => Presented::Missing,
        }
    }
}

/// Lets a request through only with `Authorization: Bearer <token>`
/// ([`ApiToken::check`]).
pub(crate) async fn require_bearer(
    State(token): State<ApiToken>,
    req: Request,
    next: Next,
) -> Response {
    match token.check(req.headers()) {
        Presented::Valid => next.run(req).await,
        Presented::Invalid(rejection) => rejection.into_response(),
        Presented::Missing => {
            ApiError::unauthorized("missing `Authorization: Bearer <token>` header").into_response()
        }
    }
}
