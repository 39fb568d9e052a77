//! The plain `http://` HTTP/1.1 path: surge's own per-host pool of
//! keep-alive connections on `hyper::client::conn::http1`.
//!
//! A connection is driven by the request that holds it: no task per
//! connection and no hand-off between a connection task and the request's
//! task, so one socket event is one wake-up. A connection goes back to the
//! pool only when its answer was read to the end; at most
//! `max_idle_per_host` idle connections are kept per host, each for at most
//! `idle_timeout` (a reaper task drops the expired ones). An idle
//! connection the peer closed is found dead when it is next taken, and
//! dropped; a request that a reused connection could not even send is sent
//! again on a new connection.
//!
//! HTTPS (TLS, ALPN, HTTP/2) and h2c go through hyper-util's pooled client
//! instead (see [`engine`](crate::engine)).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use url::Host;

use crate::dns::DnsCache;
use crate::error::{FetchError, FetchErrorKind};

type Driver = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One HTTP/1.1 connection, owned by the request using it or by the pool.
pub(crate) struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Driver,
    /// The driver has finished: the connection is closed.
    closed: bool,
    /// Taken from the pool (it served a request before).
    pub(crate) reused: bool,
}

impl Conn {
    /// Lets the connection do its I/O (read the answer, write the request).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.closed && Pin::new(&mut self.driver).poll(cx).is_ready() {
            self.closed = true;
        }
    }

    /// Whether a reused connection can take a request now (it is dead when
    /// the peer closed it while it was idle).
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            self.drive(cx);
            if self.closed {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }
}

/// Why a request was not answered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// It was never written: it may be sent again elsewhere.
    NotSent(Box<Request<Full<Bytes>>>, hyper::Error),
    /// The connection failed with the request on it.
    Failed(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotSent(_, e) | SendError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::NotSent(_, e) | SendError::Failed(e) => Some(e),
        }
    }
}

/// A one-request service on a borrowed connection (so the decompression
/// layer can wrap it); its answer's body drives the connection.
pub(crate) struct SendOn<'a>(pub(crate) Option<&'a mut Conn>);

type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Response<DrivenBody<'a>>, SendError>> + Send + 'a>>;

impl<'a> tower::Service<Request<Full<Bytes>>> for SendOn<'a> {
    type Response = Response<DrivenBody<'a>>;
    type Error = SendError;
    type Future = SendFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> SendFuture<'a> {
        let conn = self.0.take().expect("SendOn is called once");
        Box::pin(async move {
            let mut sent = std::pin::pin!(conn.sender.try_send_request(request));
            let answer = poll_fn(|cx| {
                conn.drive(cx);
                sent.as_mut().poll(cx)
            })
            .await;
            match answer {
                Ok(response) => Ok(response.map(|body| DrivenBody { body, conn })),
                Err(mut e) => match e.take_message() {
                    Some(request) => Err(SendError::NotSent(Box::new(request), e.into_error())),
                    None => Err(SendError::Failed(e.into_error())),
                },
            }
        })
    }
}

/// An answer's body that drives its connection while it is read.
pub(crate) struct DrivenBody<'a> {
    body: Incoming,
    conn: &'a mut Conn,
}

impl Body for DrivenBody<'_> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        this.conn.drive(cx);
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The settings of a [`Pool`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    pub(crate) max_idle_per_host: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Idle HTTP/1.1 connections by `host:port`.
pub(crate) struct Pool {
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
    config: PoolConfig,
    dns: DnsCache,
    builder: http1::Builder,
    reaper_started: AtomicBool,
}

impl Pool {
    pub(crate) fn new(config: PoolConfig, dns: DnsCache) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(HashMap::new()),
            config,
            dns,
            builder: http1::Builder::new(),
            reaper_started: AtomicBool::new(false),
        })
    }

    /// A connection to `host:port`: an idle one that is still alive, or a
    /// new one.
    ///
    /// # Errors
    /// The resolver's, or the connection's ([`FetchErrorKind::Connect`],
    /// [`FetchErrorKind::ConnectTimeout`], [`FetchErrorKind::System`]).
    pub(crate) async fn checkout(
        &self,
        key: &str,
        host: Host<&str>,
        port: u16,
    ) -> Result<Box<Conn>, FetchError> {
        loop {
            let idle = {
                let mut map = self.idle.lock().expect("pool poisoned");
                match map.get_mut(key) {
                    Some(list) => {
                        let idle = list.pop();
                        if list.is_empty() {
                            map.remove(key);
                        }
                        idle
                    }
                    None => None,
                }
            };
            let Some(idle) = idle else { break };
            if idle.since.elapsed() >= self.config.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            if conn.ready().await {
                conn.reused = true;
                return Ok(conn);
            }
        }
        // Boxed: a connection's set-up (DNS, TCP, handshake) is a large
        // future that most requests do not need.
        Box::pin(self.connect(host, port)).await
    }

    /// A new connection to `host:port` (its addresses in turn, all within
    /// the connect timeout).
    ///
    /// # Errors
    /// As [`Pool::checkout`].
    pub(crate) async fn connect(
        &self,
        host: Host<&str>,
        port: u16,
    ) -> Result<Box<Conn>, FetchError> {
        let ips: Vec<IpAddr> = match host {
            Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
            Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
            Host::Domain(name) => self
                .dns
                .resolve(name)
                .await
                .map_err(|e| e.to_fetch_error())?,
        };
        let limit = self.config.connect_timeout;
        let deadline = Instant::now() + limit;
        let mut last: Option<(SocketAddr, std::io::Error)> = None;
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    let (sender, driver) = self
                        .builder
                        .handshake(TokioIo::new(tcp))
                        .await
                        .map_err(|e| {
                            FetchError::new(
                                FetchErrorKind::Connect,
                                format!("HTTP handshake with {addr}: {e}"),
                            )
                        })?;
                    return Ok(Box::new(Conn {
                        sender,
                        driver,
                        closed: false,
                        reused: false,
                    }));
                }
                Ok(Err(e)) => last = Some((addr, e)),
                Err(_) => {
                    return Err(FetchError::new(
                        FetchErrorKind::ConnectTimeout,
                        format!(
                            "connecting to {addr} took longer than {} ms",
                            limit.as_millis()
                        ),
                    ));
                }
            }
        }
        let (addr, e) = last.expect("at least one address");
        // EMFILE / ENFILE: our side ran out of descriptors.
        let kind = if matches!(e.raw_os_error(), Some(23 | 24)) {
            FetchErrorKind::System
        } else {
            FetchErrorKind::Connect
        };
        Err(FetchError::new(
            kind,
            format!("tcp connect error: cannot connect to {addr}: {e}"),
        ))
    }

    /// Gives back a connection whose answer was read to the end.
    pub(crate) fn checkin(self: &Arc<Self>, key: &str, conn: Box<Conn>) {
        if conn.closed || conn.sender.is_closed() {
            return;
        }
        let idle = Idle {
            conn,
            since: Instant::now(),
        };
        let mut map = self.idle.lock().expect("pool poisoned");
        match map.get_mut(key) {
            Some(list) if list.len() >= self.config.max_idle_per_host => {}
            Some(list) => list.push(idle),
            None => {
                map.insert(key.into(), vec![idle]);
            }
        }
        drop(map);
        if !self.reaper_started.load(Ordering::Relaxed)
            && !self.reaper_started.swap(true, Ordering::Relaxed)
        {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Idle connections now (for tests and stats).
    pub(crate) fn idle_count(&self) -> usize {
        let map = self.idle.lock().expect("pool poisoned");
        map.values().map(Vec::len).sum()
    }

    fn drop_expired(&self) {
        let timeout = self.config.idle_timeout;
        let expired: Vec<Vec<Idle>> = {
            let mut map = self.idle.lock().expect("pool poisoned");
            let mut out = Vec::new();
            map.retain(|_, list| {
                let (keep, old): (Vec<Idle>, Vec<Idle>) =
                    list.drain(..).partition(|i| i.since.elapsed() < timeout);
                *list = keep;
                out.push(old);
                !list.is_empty()
            });
            out
        };
        // Closed outside the lock.
        drop(expired);
    }
}

/// Drops expired idle connections now and then, for as long as the pool
/// lives.
async fn reap(pool: Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(p) => (p.config.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(p) => p.drop_expired(),
            None => return,
        }
    }
}
