//! Real HTTP servers on 127.0.0.x that misbehave on purpose, and count what
//! they see (requests, in flight now and at most, arrival times per key).
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, std::io::Error>;

/// What servers saw; may be shared by several servers (a global count).
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Arrival times per key (the path's key segment).
    arrivals: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Stats {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn arrivals(&self, key: &str) -> Vec<Instant> {
        self.arrivals
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
    fn arrive(&self, key: &str) -> usize {
        let mut a = self.arrivals.lock().unwrap();
        let v = a.entry(key.to_owned()).or_default();
        v.push(Instant::now());
        v.len()
    }
}

struct InFlight(Arc<Stats>);
impl InFlight {
    fn enter(stats: &Arc<Stats>) -> InFlight {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(stats))
    }
}
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A misbehaving HTTP/1.1 server (HTTP/2 too, by prior knowledge).
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_on("127.0.0.1", Arc::new(Stats::default())).await
    }

    pub async fn start_on(ip: &str, stats: Arc<Stats>) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let s = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let stats = Arc::clone(&s);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&stats), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Server { addr, stats, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(
            Full::new(body.into())
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .unwrap()
}

fn streamed(chunks: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static) -> Body {
    use futures_util::StreamExt;
    BodyExt::boxed(StreamBody::new(
        chunks.map(|b| Ok::<_, std::io::Error>(Frame::data(b))),
    ))
}

async fn handle(
    stats: Arc<Stats>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let _in = InFlight::enter(&stats);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let num = |i: usize| seg.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok(match seg[0] {
        "ok" => full(200, "ok"),
        // The HTTP version the request came in.
        "version" => full(200, format!("{:?}", req.version())),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(num(1))).await;
            full(200, "slow")
        }
        "hang" => std::future::pending().await,
        // Headers, one byte, then silence.
        "stall" => Response::new(streamed(futures_util::StreamExt::chain(
            stream::iter([Bytes::from_static(b"x")]),
            stream::pending(),
        ))),
        // Closes the connection without an answer.
        "drop" => {
            stats.arrive(seg.get(1).copied().unwrap_or("drop"));
            return Err(std::io::Error::other("dropped on purpose"));
        }
        // /429/KEY/N/SECS: the first N requests of KEY get 429 + Retry-After: SECS.
        "429" => {
            let n = stats.arrive(seg[1]);
            if n as u64 <= num(2) {
                let mut r = full(429, "slow down");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, num(3).to_string().parse().unwrap());
                r
            } else {
                full(200, "ok after 429")
            }
        }
        // /500/KEY/N: the first N requests of KEY get 500.
        "500" => {
            let n = stats.arrive(seg[1]);
            if n as u64 <= num(2) {
                full(500, "boom")
            } else {
                full(200, "ok after 500")
            }
        }
        "count" => {
            stats.arrive(seg[1]);
            full(num(2) as u16, "counted")
        }
        "status" => full(num(1) as u16, "status"),
        // /capacity/K/MS: more than K at once get 503; the rest wait MS.
        "capacity" => {
            if stats.in_flight.load(Ordering::SeqCst) as u64 > num(1) {
                full(503, "over capacity")
            } else {
                tokio::time::sleep(Duration::from_millis(num(2))).await;
                full(200, "within capacity")
            }
        }
        // /bytes/N: N bytes in 64 KiB chunks.
        "bytes" => {
            let total = num(1);
            let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
            let chunks = stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(chunk.len() as u64);
                    Some((chunk.slice(..n as usize), left - n))
                }
            });
            Response::new(streamed(chunks))
        }
        "endless" => {
            let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
            Response::new(streamed(stream::repeat(chunk)))
        }
        "redirect" => match seg.get(1).copied() {
            Some("loop") => redirect(302, "/redirect/loop"),
            Some("chain") if num(2) > 0 => {
                redirect(302, &format!("/redirect/chain/{}", num(2) - 1))
            }
            Some("chain") => full(200, "end of chain"),
            // /redirect/to?URL
            Some("to") => redirect(302, &query),
            Some("see-other") => redirect(303, "/echo"),
            Some("temporary") => redirect(307, "/echo"),
            _ => full(404, "no such redirect"),
        },
        // The method, then the body.
        "echo" => {
            let method = req.method().to_string();
            let ua = req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            full(
                200,
                format!("{method} {ua}\n{}", String::from_utf8_lossy(&body)),
            )
        }
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all("hello gzip ".repeat(1000).as_bytes())
                .unwrap();
            let mut r = full(200, enc.finish().unwrap());
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
            r
        }
        "badgzip" => {
            let mut r = full(200, "this is not gzip at all, not at all");
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
            r
        }
        _ => full(404, "not found"),
    })
}

fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut r = full(status, "moved");
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert(header::LOCATION, location.parse().unwrap());
    r
}

/// A TCP server that answers every connection with `reply` (raw bytes:
/// malformed HTTP on purpose) and closes it.
pub struct RawServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    pub async fn start(reply: &'static [u8]) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tcp.read(&mut buf).await;
                    let _ = tcp.write_all(reply).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        RawServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// A port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Peak resident memory of this process so far, in bytes (VmHWM).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident memory now, in bytes (VmRSS).
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
