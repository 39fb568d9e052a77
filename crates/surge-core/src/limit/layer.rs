//! [`LimitLayer`]: a limiter in front of a tower service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{AcquireFuture, Classify, HttpClassify, Limiter, Token};

/// Wraps a service so that at most the limiter's limit of calls are in
/// flight, and reports each call's outcome to the limiter.
///
/// Backpressure follows tower's contract: `poll_ready` waits for a
/// [`Token`] (in FIFO order with every other caller of the same limiter) and
/// then for the inner service; `call` spends that token. A service that was
/// made ready but is dropped without a call gives its token back. The token
/// is released when the response future resolves; for a hyper client that is
/// when the response head arrives, so hold a [`Token`] yourself if the body
/// transfer must count too.
///
/// Put timeouts *inside* the limit (`LimitLayer` outermost) so the limiter
/// sees them as overload.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use surge_core::limit::{AdaptiveConfig, AdaptiveLimiter, LimitLayer, Limiter};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower::BoxError> {
/// let limiter = Arc::new(AdaptiveLimiter::new(AdaptiveConfig::default()));
/// let client = tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, tower::BoxError>(http::Response::builder().status(503).body(()).unwrap())
/// });
/// let mut svc = ServiceBuilder::new()
///     .layer(LimitLayer::new(limiter.clone()))
///     .timeout(Duration::from_secs(10))
///     .service(client);
/// let response = svc.ready().await?.call(http::Request::new(())).await?;
/// assert_eq!(response.status(), 503);
/// assert_eq!(limiter.snapshot().overloads, 1);
/// assert_eq!(limiter.snapshot().limit, 8); // 10 × 0.8
/// # Ok(()) }
/// ```
pub struct LimitLayer<L: ?Sized, C = HttpClassify> {
    limiter: Arc<L>,
    classify: C,
}

impl<L: Limiter + ?Sized> LimitLayer<L, HttpClassify> {
    /// A layer that limits with `limiter` and classifies with
    /// [`HttpClassify`].
    pub fn new(limiter: Arc<L>) -> Self {
        LimitLayer {
            limiter,
            classify: HttpClassify,
        }
    }
}

impl<L: ?Sized, C> LimitLayer<L, C> {
    /// The same layer with another classifier.
    pub fn classify<C2>(self, classify: C2) -> LimitLayer<L, C2> {
        LimitLayer {
            limiter: self.limiter,
            classify,
        }
    }
}

impl<L: ?Sized, C: Clone> Clone for LimitLayer<L, C> {
    fn clone(&self) -> Self {
        LimitLayer {
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
        }
    }
}

impl<S, L: Limiter + ?Sized, C: Clone> Layer<S> for LimitLayer<L, C> {
    type Service = LimitService<S, L, C>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitService {
            inner,
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
            acquiring: None,
            token: None,
        }
    }
}

/// The service made by [`LimitLayer`].
pub struct LimitService<S, L: ?Sized, C> {
    inner: S,
    limiter: Arc<L>,
    classify: C,
    acquiring: Option<AcquireFuture>,
    /// Reserved by `poll_ready`, spent by `call`.
    token: Option<Token>,
}

impl<S: Clone, L: ?Sized, C: Clone> Clone for LimitService<S, L, C> {
    /// A clone shares the limiter but not the token this one has reserved.
    fn clone(&self) -> Self {
        LimitService {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            classify: self.classify.clone(),
            acquiring: None,
            token: None,
        }
    }
}

impl<S, L, C, Req> Service<Req> for LimitService<S, L, C>
where
    S: Service<Req>,
    L: Limiter + ?Sized,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.token.is_none() {
            let acquiring = self.acquiring.get_or_insert_with(|| self.limiter.acquire());
            let token = ready!(Pin::new(acquiring).poll(cx));
            self.acquiring = None;
            self.token = Some(token);
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let token = self
            .token
            .take()
            .expect("LimitService::call without a successful poll_ready");
        ResponseFuture {
            inner: self.inner.call(request),
            token: Some(token),
            classify: self.classify.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`LimitService`]: the inner future, holding
    /// its [`Token`] until it resolves (or is dropped: then the token is
    /// ignored).
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        token: Option<Token>,
        classify: C,
    }
}

impl<F, C, Res, Err> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, Err>>,
    C: Classify<Res, Err>,
{
    type Output = Result<Res, Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Some(token) = this.token.take() {
            token.record(this.classify.classify(result.as_ref()));
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use tower::ServiceExt;

    use super::*;
    use crate::limit::{LimiterSnapshot, StaticLimiter};

    type Svc = LimitService<
        tower::util::ServiceFn<
            fn(()) -> std::future::Ready<Result<http::Response<()>, std::io::Error>>,
        >,
        dyn Limiter,
        HttpClassify,
    >;

    fn service(limiter: &Arc<dyn Limiter>) -> Svc {
        fn answer(_: ()) -> std::future::Ready<Result<http::Response<()>, std::io::Error>> {
            std::future::ready(Ok(http::Response::new(())))
        }
        let inner = tower::service_fn(answer as fn(()) -> _);
        LimitLayer::new(limiter.clone()).layer(inner)
    }

    fn snap(limiter: &Arc<dyn Limiter>) -> LimiterSnapshot {
        limiter.snapshot()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn poll_ready_reserves_and_call_spends() {
        let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(1));
        let mut a = service(&limiter);
        let mut b = service(&limiter);
        let cx = &mut Context::from_waker(Waker::noop());
        assert!(a.poll_ready(cx).is_ready());
        assert_eq!(snap(&limiter).in_flight, 1, "poll_ready holds the slot");
        assert!(b.poll_ready(cx).is_pending(), "backpressure: b waits");
        assert_eq!(snap(&limiter).waiting, 1);
        let response = a.call(());
        assert_eq!(snap(&limiter).in_flight, 1, "the call carries the slot");
        response.await.unwrap();
        assert_eq!(snap(&limiter).successes, 1);
        assert!(b.poll_ready(cx).is_ready(), "the slot went on to b");
        // A clone does not share b's reservation.
        let mut c = b.clone();
        assert!(c.poll_ready(cx).is_pending());
        drop(b); // ready but never called: its slot goes to c
        assert!(c.poll_ready(cx).is_ready());
        drop(c);
        let s = snap(&limiter);
        assert_eq!((s.in_flight, s.waiting), (0, 0), "{s:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_response_future_is_ignored() {
        let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(2));
        let svc = service(&limiter);
        let future = svc.clone().ready_oneshot().await.unwrap().call(());
        drop(future);
        let s = snap(&limiter);
        assert_eq!((s.in_flight, s.ignored, s.successes), (0, 1, 0), "{s:?}");
    }

    #[test]
    #[should_panic(expected = "without a successful poll_ready")]
    fn call_without_poll_ready_panics() {
        let limiter: Arc<dyn Limiter> = Arc::new(StaticLimiter::new(1));
        drop(service(&limiter).call(()));
    }
}
