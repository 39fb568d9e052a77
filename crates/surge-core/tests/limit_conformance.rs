//! Every limiter passes the one suite.

use std::sync::Arc;

use surge_core::limit::{
    AdaptiveConfig, AdaptiveLimiter, Algorithm, Limiter, StaticLimiter, conformance,
};

fn adaptive(algorithm: Algorithm, limit: usize) -> Arc<dyn Limiter> {
    Arc::new(AdaptiveLimiter::new(AdaptiveConfig {
        algorithm,
        initial: limit,
        min: 1,
        max: limit * 4,
        ..AdaptiveConfig::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_limiter_conforms() {
    conformance::run_all(|limit| Arc::new(StaticLimiter::new(limit)) as Arc<dyn Limiter>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_limiter_conforms() {
    conformance::run_all(|limit| adaptive(Algorithm::Gradient, limit)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vegas_limiter_conforms() {
    conformance::run_all(|limit| adaptive(Algorithm::Vegas, limit)).await;
}

/// The suite on a single thread, where every interleaving is a poll order.
#[tokio::test(flavor = "current_thread")]
async fn static_limiter_conforms_on_one_thread() {
    conformance::run_all(|limit| Arc::new(StaticLimiter::new(limit)) as Arc<dyn Limiter>).await;
}
