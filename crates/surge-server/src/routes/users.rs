//! `/users`: the service's database-backed resource.

use std::str::FromStr;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use surge_store::{NewUser, User, UserFilter, UserPatch, UserStore};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::extract::{JsonObject, PathId, QueryParams, json_type};

const NAME_MAX_CHARS: usize = 100;
const AGE_MAX: i64 = 150;
const EMAIL_MAX_CHARS: usize = 254;
const PAGE_DEFAULT: i64 = 20;
const PAGE_MAX: i64 = 100;

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    id: i64,
    name: String,
    email: String,
    age: Option<i32>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            name: u.name,
            email: u.email,
            age: u.age,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Body of `POST /users`. Unknown fields are refused.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed from `JsonObject`
pub(crate) struct CreateUser {
    /// 1–100 characters (surrounding whitespace is trimmed).
    name: String,
    /// An email address (`local@domain.tld`), unique regardless of case.
    email: String,
    /// 0–150, or null / absent when unknown.
    age: Option<i32>,
}

/// Body of `PATCH /users/{id}`: at least one field; `age: null` clears it.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the body; parsed from `JsonObject`
pub(crate) struct UpdateUser {
    name: Option<String>,
    email: Option<String>,
    age: Option<i32>,
}

/// Query of `GET /users`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the query; parsed by `QueryParams`
pub(crate) struct ListQuery {
    /// Page size, 1..=100 (default 20).
    limit: Option<i64>,
    /// Users to skip (default 0).
    offset: Option<i64>,
    /// Case-insensitive substring of the name.
    name: Option<String>,
    /// Exact email, case-insensitive.
    email: Option<String>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserPage {
    items: Vec<UserView>,
    /// Matching users across all pages.
    total: u64,
    limit: u32,
    offset: u64,
}

/// Reads the user fields of a body, collecting every problem.
struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    /// Reads a field that must be present.
    fn required<T>(
        &mut self,
        body: &Map<String, Value>,
        field: &'static str,
        read: impl FnOnce(&mut Self, &Value) -> Option<T>,
    ) -> Option<T> {
        match body.get(field) {
            Some(v) => read(self, v),
            None => {
                self.errors.push(FieldError::new(field, "is required"));
                None
            }
        }
    }

    fn check_unknown(&mut self, body: &Map<String, Value>) {
        for key in body.keys() {
            if !matches!(key.as_str(), "name" | "email" | "age") {
                self.errors
                    .push(FieldError::new(key.as_str(), "unknown field"));
            }
        }
    }

    fn name(&mut self, v: &Value) -> Option<String> {
        let Value::String(s) = v else {
            self.errors.push(FieldError::new(
                "name",
                format!("must be a string, not {}", json_type(v)),
            ));
            return None;
        };
        let s = s.trim();
        let n = s.chars().count();
        if n == 0 || n > NAME_MAX_CHARS {
            self.errors.push(FieldError::new(
                "name",
                format!("must be 1 to {NAME_MAX_CHARS} characters, got {n}"),
            ));
            return None;
        }
        Some(s.to_owned())
    }

    fn email(&mut self, v: &Value) -> Option<String> {
        let Value::String(s) = v else {
            self.errors.push(FieldError::new(
                "email",
                format!("must be a string, not {}", json_type(v)),
            ));
            return None;
        };
        let s = s.trim();
        if !is_email(s) {
            self.errors.push(FieldError::new(
                "email",
                "must be an email address like name@example.com",
            ));
            return None;
        }
        Some(s.to_owned())
    }

    /// `Some(None)` for an explicit null.
    fn age(&mut self, v: &Value) -> Option<Option<i32>> {
        match v {
            Value::Null => Some(None),
            Value::Number(n) => match n.as_i64() {
                Some(a) if (0..=AGE_MAX).contains(&a) => {
                    Some(Some(i32::try_from(a).unwrap_or_default()))
                }
                _ => {
                    self.errors.push(FieldError::new(
                        "age",
                        format!("must be an integer between 0 and {AGE_MAX}"),
                    ));
                    None
                }
            },
            other => {
                self.errors.push(FieldError::new(
                    "age",
                    format!("must be an integer or null, not {}", json_type(other)),
                ));
                None
            }
        }
    }

    fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.errors))
        }
    }
}

/// A plain `local@domain.tld` address: RFC 5322 syntax (as parsed by
/// `email_address`) restricted to what mail is really sent to — a dotted
/// domain name, no quoted local part, no IP literal.
fn is_email(s: &str) -> bool {
    if s.chars().count() > EMAIL_MAX_CHARS || s.contains(['"', '[', ' ']) {
        return false;
    }
    let Ok(addr) = email_address::EmailAddress::from_str(s) else {
        return false;
    };
    let domain = addr.domain();
    domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// Create a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    security(("bearer" = [])),
    responses(
        (status = 201, body = UserView, headers(("location" = String, description = "/users/{id}"))),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "Email already in use", body = ErrorBody),
        (status = 422, description = "Every bad field named", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let mut f = Fields { errors: Vec::new() };
    f.check_unknown(&body);
    let name = f.required(&body, "name", Fields::name);
    let email = f.required(&body, "email", Fields::email);
    let age = body.get("age").and_then(|v| f.age(v)).flatten();
    // A missing or bad name / email recorded an error, so the first arm
    // holds exactly when the input is valid.
    let new = match (name, email, f.errors.is_empty()) {
        (Some(name), Some(email), true) => NewUser { name, email, age },
        _ => return Err(ApiError::validation(f.errors)),
    };
    let user = state.db.users().create(new).await?;
    let location = format!("/users/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(UserView::from(user)),
    )
        .into_response())
}

/// List users, filtered and paginated, ordered by id.
#[utoipa::path(get, path = "/users", tag = "users", params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserPage),
        (status = 422, description = "Bad `limit` / `offset`", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: QueryParams,
) -> ApiResult<Json<UserPage>> {
    let mut errors = Vec::new();
    let limit = query.int("limit", PAGE_DEFAULT, 1, PAGE_MAX, &mut errors);
    let offset = query.int("offset", 0, 0, i64::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = UserFilter {
        name_contains: query.text("name"),
        email: query.text("email"),
        limit: u32::try_from(limit).unwrap_or(20),
        offset: offset.unsigned_abs(),
    };
    let page = state.db.users().list(&filter).await?;
    Ok(Json(UserPage {
        items: page.items.into_iter().map(UserView::from).collect(),
        total: page.total,
        limit: filter.limit,
        offset: filter.offset,
    }))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserView),
        (status = 404, body = ErrorBody),
        (status = 422, description = "Non-integer id", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<Json<UserView>> {
    let user = state.db.users().get(id).await.map_err(not_found(id))?;
    Ok(Json(user.into()))
}

/// Change some of a user's fields.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UpdateUser,
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Email already in use", body = ErrorBody),
        (status = 422, description = "Every bad field named; empty patch", body = ErrorBody),
    ))]
pub(crate) async fn update(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<UserView>> {
    let mut f = Fields { errors: Vec::new() };
    f.check_unknown(&body);
    if body.is_empty() {
        f.errors.push(FieldError::new(
            "body",
            "give at least one of name, email, age",
        ));
    }
    let name = body.get("name").and_then(|v| f.name(v));
    let email = body.get("email").and_then(|v| f.email(v));
    let age = body.get("age").and_then(|v| f.age(v));
    f.finish()?;
    let patch = UserPatch { name, email, age };
    let user = state
        .db
        .users()
        .update(id, patch)
        .await
        .map_err(not_found(id))?;
    Ok(Json(user.into()))
}

/// Delete a user.
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    state.db.users().delete(id).await.map_err(not_found(id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Names the missing user in a not-found error.
fn not_found(id: i64) -> impl FnOnce(surge_store::StoreError) -> ApiError {
    move |e| match e {
        surge_store::StoreError::NotFound => ApiError::not_found(format!("no user with id {id}")),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_email;

    #[test]
    fn email_shapes() {
        for ok in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "x_y@a-b.io",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "a@b",
            "@example.com",
            "a@",
            "a@@example.com",
            "a b@example.com",
            "\"q\"@example.com",
            "a@[127.0.0.1]",
            "a@-example.com",
            "a@example..com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
