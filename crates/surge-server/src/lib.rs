//! surge's HTTP API.
//!
//! [`router`] builds the whole axum application: routes ([`routes`]), the
//! one JSON error shape ([`error`]), extractors whose rejections use it
//! ([`extract`]), Prometheus metrics ([`metrics`]), the middleware stack
//! ([`middleware`]), composed in one place, and the live dashboard at `/`
//! with its `GET /stats` document ([`stats`]; [`AppState::spawn_sampler`]
//! starts its sampler and runtime-lag probe).
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use surge_queue::{AnyBroker, BrokerConfig, Client, Registry};
//! use surge_server::{AppState, Queue, ServerConfig, router};
//! use surge_store::{Database, PoolConfig};
//!
//! let db = Database::connect("sqlite://surge.db", &PoolConfig::default()).await?;
//! let broker = AnyBroker::connect("sqlite://surge.db", &BrokerConfig::default()).await?;
//! let queue = Queue::new(Client::new(broker, Arc::new(Registry::with_builtins())));
//! let state = AppState::new(db, queue);
//! state.spawn_sampler(); // the dashboard's time series and runtime lag
//! let app = router(state, &ServerConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod error;
pub mod extract;
pub mod metrics;
mod middleware;
mod routes;
mod stats;
mod task_metrics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{delete, get, post};
use surge_queue::Client;
use surge_queue::broker::AnyBroker;
use surge_store::Database;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::middleware::{ApiToken, require_bearer, shed_load, stack};
pub use crate::routes::crawls::CrawlApi;

/// The task queue as the handlers see it.
#[derive(Clone, Debug)]
pub struct Queue {
    client: Client<AnyBroker>,
    slots: Option<surge_queue::WorkerSlots>,
}

impl Queue {
    /// Submissions go through `client` (its registry decides which kinds
    /// are accepted).
    pub fn new(client: Client<AnyBroker>) -> Queue {
        Queue {
            client,
            slots: None,
        }
    }

    /// Shows the slots of the process's embedded workers on `/stats`.
    #[must_use]
    pub fn with_worker_slots(mut self, slots: surge_queue::WorkerSlots) -> Queue {
        self.slots = Some(slots);
        self
    }

    /// The client.
    pub fn client(&self) -> &Client<AnyBroker> {
        &self.client
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database (users live there).
    pub db: Database,
    /// The task queue.
    pub queue: Queue,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// When the server started (for uptime).
    pub started: Instant,
    /// The crawls (a PostgreSQL or Redis broker only).
    crawls: Option<CrawlApi>,
    health: Arc<routes::health::HealthCache>,
    stats: Arc<stats::Stats>,
}

impl AppState {
    /// State over `db` and `queue`, with fresh metrics.
    pub fn new(db: Database, queue: Queue) -> Self {
        let started = Instant::now();
        AppState {
            db,
            queue,
            metrics: Arc::new(Metrics::new()),
            started,
            crawls: None,
            health: Arc::default(),
            stats: Arc::new(stats::Stats::new(started)),
        }
    }

    /// Serves `/crawls` from `crawls` (without, those routes answer 501
    /// `not_supported`).
    #[must_use]
    pub fn with_crawls(mut self, crawls: CrawlApi) -> Self {
        self.crawls = Some(crawls);
        self
    }

    /// Starts, on the current tokio runtime, what `/stats` needs besides
    /// the request path: a sampler that reads the counters every 2 s (the
    /// one-minute window and the five-minute time series) and the
    /// runtime-lag probe (a 50 ms timer, twenty wake-ups a second). Both end
    /// when the state is dropped. Without them `/stats` still answers, with
    /// rates and percentiles since start, no series and no runtime lag.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(stats::sample(
            Arc::downgrade(&self.metrics),
            Arc::downgrade(&self.stats),
        ))
    }
}

/// The knobs of the HTTP edge.
#[derive(Clone)]
pub struct ServerConfig {
    /// Bearer token required on the API; `None` leaves it open.
    pub api_token: Option<String>,
    /// Requests served at once before more are shed with 503.
    pub max_in_flight: usize,
    /// How long a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field("max_in_flight", &self.max_in_flight)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_token: None,
            max_in_flight: 4096,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The whole application.
///
/// Route groups, from the inside out: the API (auth when a token is set) and
/// the docs are shed under overload; `/health`, `/metrics`, `/stats` and the
/// dashboard (`/`, `/dashboard/*`) are never shed nor behind the auth layer,
/// so probes, scrapes and an operator still see an overloaded server.
/// `/stats` checks the token itself: its task-level lists need it.
pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let mut api = Router::new()
        .route("/api/data", get(routes::demo::data))
        .route("/api/process", post(routes::demo::process))
        .route(
            "/users",
            post(routes::users::create).get(routes::users::list),
        )
        .route(
            "/users/{id}",
            get(routes::users::get)
                .patch(routes::users::update)
                .delete(routes::users::delete),
        )
        .route(
            "/tasks",
            post(routes::tasks::submit).get(routes::tasks::list),
        )
        .route("/tasks/{id}", get(routes::tasks::get))
        .route("/tasks/{id}/cancel", post(routes::tasks::cancel))
        .route("/tasks/{id}/retry", post(routes::tasks::retry))
        .route("/workflows", post(routes::tasks::workflow))
        .route("/queues", get(routes::tasks::queues))
        .route("/workers", get(routes::tasks::workers))
        .route(
            "/schedules",
            post(routes::schedules::create).get(routes::schedules::list),
        )
        .route("/schedules/{name}", delete(routes::schedules::delete))
        .route(
            "/crawls",
            post(routes::crawls::start).get(routes::crawls::list),
        )
        .route("/crawls/{id}", get(routes::crawls::get))
        .route("/crawls/{id}/pages", get(routes::crawls::pages));
    let token = config.api_token.as_deref().map(|t| ApiToken(Arc::from(t)));
    if let Some(token) = token.clone() {
        api = api.route_layer(axum::middleware::from_fn_with_state(token, require_bearer));
    }
    let docs = Router::from(
        SwaggerUi::new("/docs").url("/openapi.json", routes::openapi::ApiDoc::openapi()),
    );
    // The process's observatory: the inbound limit is listed there, beside
    // the limiters and caches of fetch, crawl and library code.
    let observatory = surge_core::observe::Observatory::global();
    let stats_config = routes::stats::StatsConfig {
        token,
        max_in_flight: config.max_in_flight,
        observatory,
    };
    let open = Router::new()
        .route("/health", get(routes::health::health))
        .route("/metrics", get(routes::metrics))
        .route(
            "/stats",
            get(routes::stats::stats).layer(axum::Extension(stats_config)),
        )
        .route("/", get(routes::dashboard::index))
        .route("/dashboard/dashboard.js", get(routes::dashboard::script))
        .route("/dashboard/dashboard.css", get(routes::dashboard::style));
    let app = shed_load(api.merge(docs), &state, config.max_in_flight, observatory)
        .merge(open)
        .fallback(|| async { ApiError::from_status(axum::http::StatusCode::NOT_FOUND) });
    stack(app, &state, config).with_state(state)
}
