//! Test support shared by every surge test suite.
//!
//! A suite that needs PostgreSQL or Redis asks [`postgres_url`] /
//! [`redis_url`]: with the URL unset it prints `SKIP <backend>: …` (straight
//! to stderr, so the line shows even when libtest captures the output of a
//! passing test) and skips — unless `SURGE_REQUIRE_BACKENDS` names the
//! backend, and then it panics: CI sets the URLs and requires every backend.
//!
//! With the `browser` feature, [`browser`] starts a real headless Chromium
//! under the same rule (backend name `browser`).
//!
//! With the `site` feature, [`site::TestSite`] serves a generated website
//! with crawler traps on 127.0.0.1, logs every request, and computes the
//! exact set of pages a correct crawl records ([`site::TestSite::expected`]).

use std::io::Write;

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "site")]
pub mod site;

/// Env var with the PostgreSQL URL for tests.
pub const POSTGRES_URL_ENV: &str = "SURGE_TEST_POSTGRES_URL";
/// Env var with the Redis URL for tests.
pub const REDIS_URL_ENV: &str = "SURGE_TEST_REDIS_URL";
/// Env var listing the backends that must not be skipped (`postgres,redis`).
pub const REQUIRE_BACKENDS_ENV: &str = "SURGE_REQUIRE_BACKENDS";

/// The URL in `var` for `backend`, or `None` after printing the SKIP line.
///
/// # Panics
/// When the URL is unset and `SURGE_REQUIRE_BACKENDS` names `backend`.
pub fn backend_url(backend: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => {
            skip_or_panic(backend, &format!("{var} is unset"));
            None
        }
    }
}

/// Prints `SKIP {backend}: {reason}` to stderr, or panics with the reason
/// when `SURGE_REQUIRE_BACKENDS` names `backend`.
///
/// # Panics
/// When the backend is required.
pub fn skip_or_panic(backend: &str, reason: &str) {
    let required = std::env::var(REQUIRE_BACKENDS_ENV).unwrap_or_default();
    assert!(
        !required
            .split(',')
            .any(|b| b.trim().eq_ignore_ascii_case(backend)),
        "{REQUIRE_BACKENDS_ENV} requires {backend} but {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIP {backend}: {reason}");
}

/// The PostgreSQL base URL, or `None` (see [`backend_url`]).
pub fn postgres_url() -> Option<String> {
    backend_url("postgres", POSTGRES_URL_ENV)
}

/// The Redis URL, or `None` (see [`backend_url`]).
pub fn redis_url() -> Option<String> {
    backend_url("redis", REDIS_URL_ENV)
}

/// `base` with its connections' `search_path` set to `schema`.
pub fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A short random lower-hex suffix for schema names, namespaces, files.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Creates schema `{prefix}{random}` on `base` and returns its name and a
/// URL whose connections use it.
///
/// # Panics
/// When the server cannot be reached or refuses.
pub async fn new_schema(base: &str, prefix: &str) -> (String, String) {
    use sqlx::Connection;
    let schema = format!("{prefix}{}", suffix());
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("create schema");
    let _ = admin.close().await;
    let url = with_search_path(base, &schema);
    (schema, url)
}

/// Child processes (e.g. `surge worker`s) killed and reaped when the test
/// ends, however it ends.
#[derive(Debug, Default)]
pub struct Processes(pub Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
