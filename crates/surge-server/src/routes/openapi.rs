//! The OpenAPI document (`/openapi.json`) and the offline docs page (`/docs`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{crawls, demo, health, schedules, stats, tasks, users};
use crate::error::{ErrorBody, ErrorObject, FieldError};

/// The API description, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "surge",
        description = "High-concurrency async work in one binary: web API, task queue, fetcher, \
                       crawler, benchmark. Every error is `{\"error\": {\"code\", \"message\", \
                       \"details\"}}`. With an API token configured, every path except /health, \
                       /metrics, /stats, /docs, /openapi.json and the dashboard (/) needs \
                       `Authorization: Bearer <token>`; /stats includes its task-level lists only \
                       with the token."
    ),
    paths(
        health::health,
        metrics_doc,
        stats::stats,
        demo::data,
        demo::process,
        users::create,
        users::list,
        users::get,
        users::update,
        users::delete,
        tasks::submit,
        tasks::list,
        tasks::get,
        tasks::cancel,
        tasks::retry,
        tasks::workflow,
        tasks::queues,
        tasks::workers,
        schedules::create,
        schedules::list,
        schedules::delete,
        crawls::start,
        crawls::list,
        crawls::get,
        crawls::pages,
    ),
    components(schemas(ErrorBody, ErrorObject, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health, metrics and the dashboard's stats"),
        (name = "demo", description = "Simulated I/O work (the seed services' endpoints)"),
        (name = "users", description = "Users stored in the database"),
        (name = "tasks", description = "The durable task queue: submit, inspect, cancel, retry; workflows; queues and workers"),
        (name = "schedules", description = "Cron schedules (with time zone) fired exactly once per tick"),
        (name = "crawls", description = "Web crawls run by the broker's workers (PostgreSQL or Redis broker): start, inspect, download the records as JSON lines"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Prometheus metrics (OpenMetrics text): requests and latency per route and
/// status, in-flight and shed requests, database pool gauges.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
#[allow(dead_code)] // documentation only: served by `routes::metrics`
fn metrics_doc() {}
