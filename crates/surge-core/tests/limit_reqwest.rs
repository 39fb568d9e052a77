//! `LimitLayer` on reqwest's client (a tower service whose response is not
//! an `http::Response`), as the README shows it: a closure classifies.

#[path = "support/overload_server.rs"]
mod overload_server;

use std::sync::Arc;
use std::time::Duration;

use overload_server::{Mode, OverloadServer};
use surge_core::limit::{
    AdaptiveConfig, AdaptiveLimiter, LimitLayer, Limiter, Outcome, status_outcome,
};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_through_the_layer() {
    let server = OverloadServer::start(4, Duration::from_millis(5));
    let limiter = Arc::new(AdaptiveLimiter::new(AdaptiveConfig {
        initial: 16,
        max: 512,
        ..AdaptiveConfig::default()
    }));
    let mut svc = ServiceBuilder::new()
        .layer(LimitLayer::new(limiter.clone()).classify(
            |result: Result<&reqwest::Response, &reqwest::Error>| match result {
                Ok(response) => status_outcome(response.status()),
                Err(e) if e.is_timeout() => Outcome::Overload,
                Err(_) => Outcome::Ignore,
            },
        ))
        .service(reqwest::Client::new());
    let url: reqwest::Url = server.uri().parse().unwrap();

    let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(limiter.snapshot().successes, 1);

    server.set_mode(Mode::TooMany);
    let request = reqwest::Request::new(reqwest::Method::GET, url);
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 429);
    let snap = limiter.snapshot();
    assert_eq!((snap.overloads, snap.limit), (1, 12), "16 × 0.8: {snap:?}");
}
