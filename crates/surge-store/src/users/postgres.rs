use super::{NewUser, Page, User, UserFilter, UserPatch, UserStore, like_contains, now, to_i64};
use crate::{Database, StoreError};

/// The listing filter: `$1` name pattern, `$2` email (either may be NULL).
/// ILIKE matches SQLite's case-insensitive LIKE (and goes beyond ASCII).
macro_rules! user_filter {
    () => {
        "($1::text IS NULL OR name ILIKE $1 ESCAPE '\\') \
                             AND ($2::text IS NULL OR lower(email) = lower($2))"
    };
}

/// The user columns, as a literal so statements are built at compile time.
macro_rules! columns {
    () => {
        "id, name, email, age, created_at, updated_at"
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

impl UserStore for PostgresUsers {
    async fn create(&self, new: NewUser) -> Result<User, StoreError> {
        let mut conn = self.db.postgres().await?;
        let at = now();
        const SQL: &str = concat!(
            "INSERT INTO users (name, email, age, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING ",
            columns!()
        );
        Ok(sqlx::query_as(SQL)
            .bind(new.name)
            .bind(new.email)
            .bind(new.age)
            .bind(at)
            .fetch_one(&mut *conn)
            .await?)
    }

    async fn get(&self, id: i64) -> Result<User, StoreError> {
        let mut conn = self.db.postgres().await?;
        const SQL: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
        sqlx::query_as(SQL)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn list(&self, filter: &UserFilter) -> Result<Page<User>, StoreError> {
        let name = filter.name_contains.as_deref().map(like_contains);
        let mut conn = self.db.postgres().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let (total,): (i64,) =
            sqlx::query_as(concat!("SELECT COUNT(*) FROM users WHERE ", user_filter!()))
                .bind(&name)
                .bind(&filter.email)
                .fetch_one(&mut *tx)
                .await?;
        let items = sqlx::query_as(concat!(
            "SELECT ",
            columns!(),
            " FROM users WHERE ",
            user_filter!(),
            " ORDER BY id LIMIT $3 OFFSET $4"
        ))
        .bind(&name)
        .bind(&filter.email)
        .bind(i64::from(filter.limit))
        .bind(to_i64(filter.offset))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn update(&self, id: i64, patch: UserPatch) -> Result<User, StoreError> {
        let mut conn = self.db.postgres().await?;
        const SQL: &str = concat!(
            "UPDATE users SET name = COALESCE($1::text, name), email = COALESCE($2::text, email), \
             age = CASE WHEN $3::boolean THEN $4::integer ELSE age END, updated_at = $5 \
             WHERE id = $6 RETURNING ",
            columns!()
        );
        sqlx::query_as(SQL)
            .bind(patch.name)
            .bind(patch.email)
            .bind(patch.age.is_some())
            .bind(patch.age.flatten())
            .bind(now())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete(&self, id: i64) -> Result<(), StoreError> {
        let mut conn = self.db.postgres().await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
