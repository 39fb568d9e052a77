//! Users: the service's example resource, one trait and one module per backend.

mod postgres;
mod sql_store;
mod sqlite;

use std::future::Future;

use chrono::{DateTime, SubsecRound, Utc};

use crate::database::Pool;
use crate::{Database, StoreError};

pub use postgres::PostgresUsers;
pub use sqlite::SqliteUsers;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct User {
    /// Assigned by the database, increasing.
    pub id: i64,
    /// 1–100 characters (validated at the edge).
    pub name: String,
    /// Unique regardless of case.
    pub email: String,
    /// 0–150, or unknown.
    pub age: Option<i32>,
    /// When the user was created (microsecond precision on every backend).
    pub created_at: DateTime<Utc>,
    /// When the user last changed.
    pub updated_at: DateTime<Utc>,
}

/// The fields of a user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Age, if known.
    pub age: Option<i32>,
}

/// A partial update: `None` leaves a field alone; `age: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New name.
    pub name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New age, or `Some(None)` to clear it.
    pub age: Option<Option<i32>>,
}

/// Which users to list, and which page.
#[derive(Debug, Clone)]
pub struct UserFilter {
    /// Substring of the name, ASCII case-insensitive (`%` and `_` match literally).
    pub name_contains: Option<String>,
    /// Exact email, case-insensitive.
    pub email: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Users to skip (ordered by id).
    pub offset: u64,
}

/// One page of a listing plus the total number of matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The page.
    pub items: Vec<T>,
    /// Matches in all pages.
    pub total: u64,
}

/// Storage of users. Every backend passes [`crate::conformance::users`].
pub trait UserStore: Send + Sync {
    /// Inserts a user. [`StoreError::Conflict`] if the email is taken.
    fn create(&self, new: NewUser) -> impl Future<Output = Result<User, StoreError>> + Send;
    /// One user. [`StoreError::NotFound`] if there is none with `id`.
    fn get(&self, id: i64) -> impl Future<Output = Result<User, StoreError>> + Send;
    /// A page of users matching `filter`, ordered by id, with the total, read
    /// in one transaction so the two agree.
    fn list(
        &self,
        filter: &UserFilter,
    ) -> impl Future<Output = Result<Page<User>, StoreError>> + Send;
    /// Applies `patch`. [`StoreError::NotFound`] / [`StoreError::Conflict`].
    fn update(
        &self,
        id: i64,
        patch: UserPatch,
    ) -> impl Future<Output = Result<User, StoreError>> + Send;
    /// Deletes a user. [`StoreError::NotFound`] if there is none with `id`.
    fn delete(&self, id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The users repository of whichever backend the [`Database`] is on.
#[derive(Debug, Clone)]
pub enum Users {
    /// On SQLite.
    Sqlite(SqliteUsers),
    /// On PostgreSQL.
    Postgres(PostgresUsers),
}

impl Database {
    /// The users repository on this database.
    pub fn users(&self) -> Users {
        match self.pool() {
            Pool::Sqlite(_) => Users::Sqlite(SqliteUsers::new(self.clone())),
            Pool::Postgres(_) => Users::Postgres(PostgresUsers::new(self.clone())),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Users::Sqlite($s) => $call.await,
            Users::Postgres($s) => $call.await,
        }
    };
}

impl UserStore for Users {
    async fn create(&self, new: NewUser) -> Result<User, StoreError> {
        dispatch!(self, s => s.create(new))
    }
    async fn get(&self, id: i64) -> Result<User, StoreError> {
        dispatch!(self, s => s.get(id))
    }
    async fn list(&self, filter: &UserFilter) -> Result<Page<User>, StoreError> {
        dispatch!(self, s => s.list(filter))
    }
    async fn update(&self, id: i64, patch: UserPatch) -> Result<User, StoreError> {
        dispatch!(self, s => s.update(id, patch))
    }
    async fn delete(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete(id))
    }
}

/// Now, at the precision every backend stores (microseconds), so a value
/// read back equals the value written.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `%needle%` for LIKE with `\` as the escape character.
fn like_contains(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(super::like_contains("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
