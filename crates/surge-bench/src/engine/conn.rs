//! One keep-alive HTTP/1.1 connection on hyper, driven in the task that
//! sends on it (no second task, no cross-task wake-up per request).

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use surge_core::ErrorCategory;
use tokio::net::TcpStream;

type Io = TokioIo<TcpStream>;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) category: ErrorCategory,
    pub(crate) message: String,
}

impl Failure {
    fn network(message: impl std::fmt::Display) -> Failure {
        Failure {
            category: ErrorCategory::Network,
            message: message.to_string(),
        }
    }

    fn timeout(what: &str, after: Duration) -> Failure {
        Failure {
            category: ErrorCategory::Timeout,
            message: format!("{what} took longer than {after:?}"),
        }
    }
}

/// A response read to its end.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) bytes: u64,
}

/// An open connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Connection<Io, Full<Bytes>>>>,
    /// The connection future has finished (the peer closed, or an error).
    finished: bool,
    /// The request timeout, set lazily: a timer entry per request (insert,
    /// remove) costs more than the rest of the generator's bookkeeping, so
    /// this one timer is only moved when it fires before the request in
    /// flight is due to time out (about once per timeout period).
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    /// Connects (TCP, no Nagle) and does the HTTP/1 handshake.
    pub(crate) async fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, Failure> {
        let connect = async {
            let stream = TcpStream::connect(addr).await.map_err(Failure::network)?;
            // Requests are small and written whole: no reason to wait for
            // an ACK before sending the next one.
            stream.set_nodelay(true).map_err(Failure::network)?;
            let (sender, connection) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(stream))
                .await
                .map_err(Failure::network)?;
            Ok(Conn {
                sender,
                connection: Box::pin(connection),
                finished: false,
                timer: Box::pin(tokio::time::sleep(timeout)),
            })
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(r) => r.map_err(|f: Failure| Failure {
                message: format!("connect to {addr}: {}", f.message),
                ..f
            }),
            Err(_) => Err(Failure::timeout("connect", timeout)),
        }
    }

    /// Whether another request can be sent on it.
    pub(crate) fn usable(&self) -> bool {
        !self.finished && !self.sender.is_closed()
    }

    /// Sends `req` and reads the whole response; a timeout error when it
    /// is not all there `timeout` after `sent`.
    pub(crate) async fn exchange(
        &mut self,
        req: http::Request<Full<Bytes>>,
        sent: Instant,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let Conn {
            sender,
            connection,
            finished,
            timer,
        } = self;
        let exchange = async {
            let response = sender.send_request(req).await.map_err(Failure::network)?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(Failure::network)?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                }
            }
            Ok(Answer { status, bytes })
        };
        let mut exchange = std::pin::pin!(exchange);
        let limit = sent + timeout;
        loop {
            tokio::select! {
                biased;
                answer = &mut exchange => return answer,
                ended = connection.as_mut(), if !*finished => {
                    *finished = true;
                    // The connection may end in the same poll that handed
                    // over the response (the server said `close`): the
                    // response (or the reason it will not come) is there.
                    let answer = exchange.await;
                    return match (answer, ended) {
                        (Err(_), Err(e)) => Err(Failure::network(e)),
                        (answer, _) => answer,
                    };
                }
                () = timer.as_mut() => {
                    if Instant::now() >= limit {
                        *finished = true;
                        return Err(Failure::timeout("the response", timeout));
                    }
                    timer.as_mut().reset(limit.into());
                }
            }
        }
    }
}
