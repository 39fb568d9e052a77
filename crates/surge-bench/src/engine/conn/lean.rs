//! The lean HTTP/1.1 client: one `write` of the request encoded once per
//! level, then the response parsed from a read buffer the connection owns
//! (`framing.rs`); bodies are counted and thrown away. No allocation per
//! request: the buffer only grows for a response head (or chunk-size line)
//! longer than it, up to [`MAX_HEAD`].
//!
//! Bytes that arrive after a response are kept: they are the start of the
//! next one (a server may write several at once).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::{self, Body, Chunked};
use super::{Answer, Deadline, Failure, Outgoing};

/// The read buffer of a connection (a typical response fits many times).
const BUFFER: usize = 16 * 1024;
/// Longest response head (or chunk-size line) read.
const MAX_HEAD: usize = 1024 * 1024;

/// An open connection.
pub(crate) struct LeanConn {
    io: Io,
    /// The last response left the connection open for another request.
    reusable: bool,
    deadline: Deadline,
}

/// The socket and its read buffer: `buf[start..end]` is read and not yet
/// used.
struct Io {
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl super::Connection for LeanConn {
    async fn open(addr: SocketAddr, timeout: Duration) -> Result<LeanConn, Failure> {
        let stream = super::connect(addr, timeout).await?;
        Ok(LeanConn {
            io: Io {
                stream,
                buf: vec![0; BUFFER].into_boxed_slice(),
                start: 0,
                end: 0,
            },
            reusable: true,
            deadline: Deadline::new(timeout),
        })
    }

    fn usable(&self) -> bool {
        self.reusable
    }

    async fn exchange(
        &mut self,
        request: &Outgoing,
        sent: Instant,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        self.reusable = false;
        match self
            .deadline
            .run(self.io.exchange(request), sent + timeout)
            .await
        {
            Some(Ok((answer, keep_alive))) => {
                self.reusable = keep_alive;
                Ok(answer)
            }
            Some(Err(f)) => Err(f),
            None => Err(Failure::timeout("the response", timeout)),
        }
    }
}

fn closed(during: impl std::fmt::Display) -> Failure {
    Failure::network(format!("the server closed the connection {during}"))
}

impl Io {
    /// Writes the request, reads the response to its end; also whether the
    /// connection may be used again.
    async fn exchange(&mut self, request: &Outgoing) -> Result<(Answer, bool), Failure> {
        self.stream
            .write_all(&request.wire)
            .await
            .map_err(|e| Failure::network(format!("sending the request: {e}")))?;
        let head = loop {
            // Usually nothing is there yet: read before parsing.
            if self.start < self.end {
                match framing::head(&self.buf[self.start..self.end], request.head) {
                    Ok(Some(head)) => {
                        self.start += head.len;
                        if !head.informational() {
                            break head;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Failure::network(e)),
                }
            }
            if self.read_more().await? == 0 {
                return Err(closed("before the response head ended"));
            }
        };
        let bytes = match head.body {
            Body::Empty => 0,
            Body::Length(n) => {
                self.skip(n).await?;
                n
            }
            Body::Chunked => self.chunked().await?,
            Body::UntilClose => self.until_close().await?,
        };
        Ok((
            Answer {
                status: head.status,
                bytes,
            },
            head.keep_alive,
        ))
    }

    /// Reads more bytes after `end` (making room first); 0 at the end of
    /// the stream.
    async fn read_more(&mut self) -> Result<usize, Failure> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                let mut bigger = vec![0; self.buf.len() * 2].into_boxed_slice();
                bigger[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = bigger;
            } else {
                return Err(Failure::network(format!(
                    "a response head or chunk-size line is longer than {MAX_HEAD} bytes"
                )));
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| Failure::network(format!("reading the response: {e}")))?;
        self.end += n;
        Ok(n)
    }

    /// Reads and discards `n` body bytes.
    async fn skip(&mut self, n: u64) -> Result<(), Failure> {
        let mut left = n;
        loop {
            let take = left.min((self.end - self.start) as u64);
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(());
            }
            if self.read_more().await? == 0 {
                return Err(closed(format_args!("after {} of {n} body bytes", n - left)));
            }
        }
    }

    /// Reads and discards a chunked body; its data bytes.
    async fn chunked(&mut self) -> Result<u64, Failure> {
        let mut body = Chunked::new();
        loop {
            let used = body
                .feed(&self.buf[self.start..self.end])
                .map_err(Failure::network)?;
            self.start += used;
            if body.done() {
                return Ok(body.bytes);
            }
            if self.read_more().await? == 0 {
                return Err(closed(format_args!(
                    "in a chunked body, after {} data bytes",
                    body.bytes
                )));
            }
        }
    }

    /// Reads and discards a body that ends with the connection.
    async fn until_close(&mut self) -> Result<u64, Failure> {
        let mut bytes = 0u64;
        loop {
            bytes += (self.end - self.start) as u64;
            self.start = self.end;
            if self.read_more().await? == 0 {
                return Ok(bytes);
            }
        }
    }
}
