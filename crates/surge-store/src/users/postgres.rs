//! Users in PostgreSQL: the PostgreSQL dialect of the statements.

use super::sql_store::sql_user_store;
use crate::Database;

/// The user columns, as a literal so statements are built at compile time.
macro_rules! columns {
    () => {
        "id, name, email, age, created_at, updated_at"
    };
}

/// The listing filter: `$1` name pattern, `$2` email (either may be NULL).
/// ILIKE matches SQLite's case-insensitive LIKE (and goes beyond ASCII).
macro_rules! user_filter {
    () => {
        "($1::text IS NULL OR name ILIKE $1 ESCAPE '\\') \
         AND ($2::text IS NULL OR lower(email) = lower($2))"
    };
}

/// Users in the PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresUsers {
    db: Database,
}

impl PostgresUsers {
    pub(crate) fn new(db: Database) -> Self {
        PostgresUsers { db }
    }
}

sql_user_store!(
    PostgresUsers,
    postgres,
    insert: concat!(
        "INSERT INTO users (name, email, age, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING ",
        columns!()
    ),
    get: concat!("SELECT ", columns!(), " FROM users WHERE id = $1"),
    count: concat!("SELECT COUNT(*) FROM users WHERE ", user_filter!()),
    page: concat!(
        "SELECT ", columns!(), " FROM users WHERE ", user_filter!(),
        " ORDER BY id LIMIT $3 OFFSET $4"
    ),
    update: concat!(
        "UPDATE users SET name = COALESCE($1::text, name), email = COALESCE($2::text, email), \
         age = CASE WHEN $3::boolean THEN $4::integer ELSE age END, updated_at = $5 \
         WHERE id = $6 RETURNING ",
        columns!()
    ),
    delete: "DELETE FROM users WHERE id = $1",
);
