//! Load shedding on a [`StaticLimiter`]: a request that finds every slot
//! taken is refused at once ([`Overloaded`]), never queued. The limiter is
//! listed in the process's [`Observatory`](surge_core::observe::Observatory)
//! as `http.inbound`, so `/stats` and the dashboard show its limit, the
//! requests in flight under it and how many were shed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::BoxError;
use surge_core::limit::{Limiter, StaticLimiter, Token};
use tower::load_shed::error::Overloaded;
use tower::{Layer, Service};

/// Wraps a service in [`Shed`].
#[derive(Clone)]
pub(crate) struct ShedLayer {
    limiter: Arc<StaticLimiter>,
}

impl ShedLayer {
    pub(crate) fn new(limiter: Arc<StaticLimiter>) -> Self {
        ShedLayer { limiter }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            limiter: Arc::clone(&self.limiter),
            token: None,
        }
    }
}

/// Takes a slot in `poll_ready` (or fails with [`Overloaded`]) and holds it
/// until the response future ends.
pub(crate) struct Shed<S> {
    inner: S,
    limiter: Arc<StaticLimiter>,
    /// The slot taken by `poll_ready` for the next `call`.
    token: Option<Token>,
}

impl<S: Clone> Clone for Shed<S> {
    /// A clone has not taken a slot yet.
    fn clone(&self) -> Self {
        Shed {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
            token: None,
        }
    }
}

impl<S, Req> Service<Req> for Shed<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.token.is_none() {
            match self.limiter.try_acquire() {
                Some(token) => self.token = Some(token),
                None => return Poll::Ready(Err(Overloaded::new().into())),
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> ShedFuture<S::Future> {
        ShedFuture {
            inner: self.inner.call(req),
            token: self.token.take(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Shed`]: releases the slot when it ends (a success)
    /// or is dropped (the client went away: no sample).
    pub(crate) struct ShedFuture<F> {
        #[pin]
        inner: F,
        token: Option<Token>,
    }
}

impl<F, T, E> Future for ShedFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(token) = this.token.take() {
            token.success();
        }
        Poll::Ready(out.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn sheds_past_the_limit_and_releases_when_done() {
        let limiter = Arc::new(StaticLimiter::new(1));
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Arc::new(tokio::sync::Mutex::new(Some(gate_rx)));
        let svc = ShedLayer::new(Arc::clone(&limiter)).layer(tower::service_fn(move |()| {
            let gate = Arc::clone(&gate);
            async move {
                if let Some(rx) = gate.lock().await.take() {
                    let _ = rx.await;
                }
                Ok::<_, Infallible>("done")
            }
        }));
        let first = tokio::spawn(svc.clone().oneshot(()));
        while limiter.snapshot().in_flight == 0 {
            tokio::task::yield_now().await;
        }
        let refused = svc.clone().oneshot(()).await.expect_err("at the limit");
        assert!(refused.is::<Overloaded>());
        gate_tx.send(()).expect("first still waiting");
        assert_eq!(first.await.expect("joined").expect("served"), "done");
        assert_eq!(svc.oneshot(()).await.expect("a free slot again"), "done");
        let snap = limiter.snapshot();
        assert_eq!((snap.in_flight, snap.rejected, snap.successes), (0, 1, 2));
    }
}
