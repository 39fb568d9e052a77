//! The connection seam: one keep-alive HTTP/1.1 connection, driven in the
//! task that sends on it. Two implementations:
//!
//! - [`LeanConn`] (`lean.rs`, framing in `framing.rs`): the request encoded
//!   once per level, one `write` per request, the response parsed with
//!   `httparse` from a read buffer owned by the connection; bodies are read
//!   and thrown away. Nothing is allocated per request. The default for
//!   `http://` targets.
//! - [`HyperConn`] (`hyper.rs`): hyper's HTTP/1 client, kept to compare
//!   against (`--client hyper`) and for what the lean path would not cover.
//!
//! Both are run against the same framing suite
//! (`crates/surge-bench/tests/framing.rs`).

mod framing;
mod hyper;
mod lean;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use surge_core::ErrorCategory;

pub(crate) use hyper::HyperConn;
pub(crate) use lean::LeanConn;

use crate::target::Target;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) category: ErrorCategory,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn network(message: impl std::fmt::Display) -> Failure {
        Failure {
            category: ErrorCategory::Network,
            message: message.to_string(),
        }
    }

    pub(crate) fn timeout(what: &str, after: Duration) -> Failure {
        Failure {
            category: ErrorCategory::Timeout,
            message: format!("{what} took longer than {after:?}"),
        }
    }
}

/// A response read to its end.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Body bytes (chunk framing and trailers not counted).
    pub(crate) bytes: u64,
}

/// The request of a level, prepared once: the target (for hyper) and its
/// HTTP/1.1 encoding (for the lean path).
pub(crate) struct Outgoing {
    pub(crate) target: Target,
    /// Request line, headers and body, ready to write.
    pub(crate) wire: Bytes,
    /// A `HEAD` request: its response has no body whatever it says.
    pub(crate) head: bool,
}

impl Outgoing {
    pub(crate) fn new(target: &Target) -> Outgoing {
        Outgoing {
            target: target.clone(),
            wire: target.encode(),
            head: target.method() == Method::HEAD,
        }
    }
}

/// One keep-alive connection of the generator.
pub(crate) trait Connection: Sized + Send + 'static {
    /// Connects (TCP, no Nagle), within `timeout`.
    fn open(
        addr: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self, Failure>> + Send;

    /// Whether another request can be sent on it.
    fn usable(&self) -> bool;

    /// Sends `request` and reads the whole response; a timeout error when
    /// it is not all there `timeout` after `sent`. After an error the
    /// connection is not [`usable`](Connection::usable).
    fn exchange(
        &mut self,
        request: &Outgoing,
        sent: Instant,
        timeout: Duration,
    ) -> impl Future<Output = Result<Answer, Failure>> + Send;
}

/// Connects to `addr` within `timeout`, without Nagle's delay (requests
/// are small and written whole).
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, Failure> {
    let connect = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(Failure::network)?;
        stream.set_nodelay(true).map_err(Failure::network)?;
        Ok(stream)
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r.map_err(|f: Failure| Failure {
            message: format!("connect to {addr}: {}", f.message),
            ..f
        }),
        Err(_) => Err(Failure::timeout("connect", timeout)),
    }
}

/// A connection's request timeout, set lazily: a timer entry per request
/// (insert, remove) costs more than the rest of the generator's
/// bookkeeping, so this one timer is only moved when it fires before the
/// request in flight is due to time out (about once per timeout period).
pub(crate) struct Deadline {
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    pub(crate) fn new(timeout: Duration) -> Deadline {
        Deadline {
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Polls the timer: ready once `limit` has passed (moving the timer to
    /// `limit` when it fired earlier).
    pub(crate) fn poll_passed(
        &mut self,
        cx: &mut std::task::Context<'_>,
        limit: Instant,
    ) -> Poll<()> {
        loop {
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    if Instant::now() >= limit {
                        return Poll::Ready(());
                    }
                    self.timer.as_mut().reset(limit.into());
                }
            }
        }
    }

    /// Runs `work` until it ends or `limit` passes (`None`).
    pub(crate) async fn run<F: Future>(&mut self, work: F, limit: Instant) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            self.poll_passed(cx, limit).map(|()| None)
        })
        .await
    }
}
