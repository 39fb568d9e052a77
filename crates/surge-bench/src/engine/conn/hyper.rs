//! One keep-alive HTTP/1.1 connection on hyper's client, driven in the
//! task that sends on it (no second task, no cross-task wake-up per
//! request).

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Answer, Deadline, Failure, Outgoing};

type Io = TokioIo<TcpStream>;

/// An open connection.
pub(crate) struct HyperConn {
    sender: SendRequest<Full<Bytes>>,
    connection: Pin<Box<Connection<Io, Full<Bytes>>>>,
    /// The connection future has finished (the peer closed, or an error).
    finished: bool,
    deadline: Deadline,
}

impl super::Connection for HyperConn {
    async fn open(addr: SocketAddr, timeout: Duration) -> Result<HyperConn, Failure> {
        let stream = super::connect(addr, timeout).await?;
        let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
        let (sender, connection) = match tokio::time::timeout(timeout, handshake).await {
            Ok(r) => r.map_err(|e| Failure::network(format!("handshake with {addr}: {e}")))?,
            Err(_) => return Err(Failure::timeout("the handshake", timeout)),
        };
        Ok(HyperConn {
            sender,
            connection: Box::pin(connection),
            finished: false,
            deadline: Deadline::new(timeout),
        })
    }

    fn usable(&self) -> bool {
        !self.finished && !self.sender.is_closed()
    }

    async fn exchange(
        &mut self,
        request: &Outgoing,
        sent: Instant,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let HyperConn {
            sender,
            connection,
            finished,
            deadline,
        } = self;
        let req = request.target.request();
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
        let passed = std::future::poll_fn(|cx| deadline.poll_passed(cx, limit));
        let answer = tokio::select! {
            biased;
            answer = &mut exchange => answer,
            ended = connection.as_mut(), if !*finished => {
                *finished = true;
                // The connection may end in the same poll that handed
                // over the response (the server said `close`): the
                // response (or the reason it will not come) is there.
                let answer = exchange.await;
                match (answer, ended) {
                    (Err(_), Err(e)) => Err(Failure::network(e)),
                    (answer, _) => answer,
                }
            }
            () = passed => Err(Failure::timeout("the response", timeout)),
        };
        if answer.is_err() {
            *finished = true;
        }
        answer
    }
}
