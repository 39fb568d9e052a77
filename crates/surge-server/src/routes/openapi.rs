//! The OpenAPI document (`/openapi.json`) and the offline docs page (`/docs`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{demo, health, schedules, tasks, users};
use crate::error::{ErrorBody, ErrorObject, FieldError};

/// The API description, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "surge",
        description = "High-concurrency async work in one binary: web API, task queue, fetcher, \
                       crawler, benchmark. Every error is `{\"error\": {\"code\", \"message\", \
                       \"details\"}}`. With an API token configured, every path except /health, \
                       /metrics, /docs and /openapi.json needs `Authorization: Bearer <token>`."
    ),
    paths(
        health::health,
        metrics_doc,
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
    ),
    components(schemas(ErrorBody, ErrorObject, FieldError)),
    modifiers(&BearerAuth),
    tags(
        (name = "service", description = "Health and metrics"),
        (name = "demo", description = "Simulated I/O work (the seed services' endpoints)"),
        (name = "users", description = "Users stored in the database"),
        (name = "tasks", description = "The durable task queue: submit, inspect, cancel, retry; workflows; queues and workers"),
        (name = "schedules", description = "Cron schedules (with time zone) fired exactly once per tick"),
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
