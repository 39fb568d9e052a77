//! The users conformance suite on every backend.
//!
//! PostgreSQL runs when `SURGE_TEST_POSTGRES_URL` is set (each run in its own
//! schema); otherwise it prints why it skipped, unless `SURGE_REQUIRE_BACKENDS`
//! names `postgres`, in which case a skip is a failure.

use surge_store::{Database, PoolConfig};

#[tokio::test]
async fn users_conformance_sqlite() {
    let dir = std::env::temp_dir().join(format!("surge-store-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("t.db").display());
    let db = Database::connect(&url, &PoolConfig::default())
        .await
        .unwrap();
    surge_store::conformance::users(&db.users()).await;
    db.close().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn users_conformance_postgres() {
    let Some(base) = postgres_url() else { return };
    let (schema, url) = surge_testkit::new_schema(&base, "surge_t_").await;
    let db = Database::connect(&url, &PoolConfig::default())
        .await
        .unwrap();
    surge_store::conformance::users(&db.users()).await;
    db.close().await;
    exec(&base, &format!("DROP SCHEMA {schema} CASCADE")).await;
}

#[tokio::test]
async fn postgres_outage_is_unavailable_not_a_generic_error() {
    let Some(_) = postgres_url() else { return };
    // Nothing listens on port 1: the connection is refused.
    let cfg = PoolConfig {
        max_connections: 1,
        acquire_timeout: std::time::Duration::from_millis(500),
    };
    let err = Database::connect("postgres://postgres@127.0.0.1:1/test", &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(err, surge_store::StoreError::Unavailable { .. }),
        "{err:?}"
    );
}

use surge_testkit::postgres_url;

async fn exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sql).execute(&mut c).await.unwrap();
}
