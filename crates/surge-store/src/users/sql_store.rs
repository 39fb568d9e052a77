//! The one implementation of [`UserStore`](super::UserStore) over SQL; each
//! backend module supplies only its dialect (statements) and its connection.

/// Implements `UserStore` for `$store` (a struct with a `db: Database`
/// field), acquiring connections with `Database::$conn` and running the
/// given statements. Bind order per statement:
/// - `insert`: name, email, age, now;
/// - `get` / `delete`: id;
/// - `count`: name pattern, email; `page`: name pattern, email, limit, offset;
/// - `update`: name, email, set_age, age, now, id.
macro_rules! sql_user_store {
    ($store:ident, $conn:ident, insert: $insert:expr, get: $get:expr, count: $count:expr,
     page: $page:expr, update: $update:expr, delete: $delete:expr $(,)?) => {
        impl super::UserStore for $store {
            async fn create(&self, new: super::NewUser) -> Result<super::User, crate::StoreError> {
                let mut conn = self.db.$conn().await?;
                Ok(sqlx::query_as($insert)
                    .bind(new.name)
                    .bind(new.email)
                    .bind(new.age)
                    .bind(super::now())
                    .fetch_one(&mut *conn)
                    .await?)
            }

            async fn get(&self, id: i64) -> Result<super::User, crate::StoreError> {
                let mut conn = self.db.$conn().await?;
                sqlx::query_as($get)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or(crate::StoreError::NotFound)
            }

            async fn list(
                &self,
                filter: &super::UserFilter,
            ) -> Result<super::Page<super::User>, crate::StoreError> {
                let name = filter.name_contains.as_deref().map(super::like_contains);
                let mut conn = self.db.$conn().await?;
                // One transaction, so the total and the page agree.
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                let (total,): (i64,) = sqlx::query_as($count)
                    .bind(&name)
                    .bind(&filter.email)
                    .fetch_one(&mut *tx)
                    .await?;
                let items = sqlx::query_as($page)
                    .bind(&name)
                    .bind(&filter.email)
                    .bind(i64::from(filter.limit))
                    .bind(super::to_i64(filter.offset))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(super::Page {
                    items,
                    total: u64::try_from(total).unwrap_or(0),
                })
            }

            async fn update(
                &self,
                id: i64,
                patch: super::UserPatch,
            ) -> Result<super::User, crate::StoreError> {
                let mut conn = self.db.$conn().await?;
                sqlx::query_as($update)
                    .bind(patch.name)
                    .bind(patch.email)
                    .bind(patch.age.is_some())
                    .bind(patch.age.flatten())
                    .bind(super::now())
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or(crate::StoreError::NotFound)
            }

            async fn delete(&self, id: i64) -> Result<(), crate::StoreError> {
                let mut conn = self.db.$conn().await?;
                let done = sqlx::query($delete).bind(id).execute(&mut *conn).await?;
                if done.rows_affected() == 0 {
                    return Err(crate::StoreError::NotFound);
                }
                Ok(())
            }
        }
    };
}

pub(super) use sql_user_store;
