//! A raw TCP server on 127.0.0.1 that answers each HTTP/1.1 request with
//! bytes a script gives (real sockets, no HTTP library): for testing how a
//! client frames responses. One thread per connection.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the script is asked about.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Accepted connections before this one (0 for the first).
    pub connection: u64,
    /// Requests before this one on this connection.
    pub on_connection: u64,
    /// Requests before this one on the whole server.
    pub total: u64,
    /// The request head, as received.
    pub head: String,
    /// The request body, as received (per its content-length).
    pub body: Vec<u8>,
}

/// What the server does about a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes these bytes in one write.
    Bytes(Vec<u8>),
    /// Writes these bytes one write per byte, 1 ms apart, so that the
    /// client's reads see them in many pieces.
    ByteByByte(Vec<u8>),
    /// Writes these bytes, then closes the connection.
    Close(Vec<u8>),
    /// Writes nothing (an earlier reply already held this response).
    Nothing,
}

type Script = dyn Fn(&Ask) -> Reply + Send + Sync;
/// Requests received: head and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A running scripted server.
#[derive(Clone)]
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    heads: Received,
}

impl Scripted {
    /// Starts a server answering with `script`.
    pub fn start(script: impl Fn(&Ask) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let server = Scripted {
            addr: listener.local_addr().expect("addr"),
            connections: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicU64::new(0)),
            heads: Arc::new(Mutex::new(Vec::new())),
        };
        let script: Arc<Script> = Arc::new(script);
        let s = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let connection = s.connections.fetch_add(1, Ordering::SeqCst);
                let (s, script) = (s.clone(), Arc::clone(&script));
                std::thread::spawn(move || s.serve(stream, connection, &*script));
            }
        });
        server
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every request received so far: head and body.
    pub fn received(&self) -> Vec<(String, Vec<u8>)> {
        self.heads.lock().unwrap().clone()
    }

    fn serve(&self, mut stream: TcpStream, connection: u64, script: &Script) {
        let _ = stream.set_nodelay(true);
        let mut pending = Vec::new();
        let mut chunk = [0u8; 4096];
        for on_connection in 0.. {
            // One request head, then its body.
            let head_end = loop {
                if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while pending.len() < head_end + length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&chunk[..n]),
                }
            }
            let body = pending[head_end..head_end + length].to_vec();
            pending.drain(..head_end + length);
            let total = self.requests.fetch_add(1, Ordering::SeqCst);
            self.heads
                .lock()
                .unwrap()
                .push((head.clone(), body.clone()));
            let ask = Ask {
                connection,
                on_connection,
                total,
                head,
                body,
            };
            let written = match script(&ask) {
                Reply::Bytes(b) => stream.write_all(&b),
                Reply::ByteByByte(b) => b.iter().try_for_each(|byte| {
                    std::thread::sleep(Duration::from_millis(1));
                    stream.write_all(std::slice::from_ref(byte))
                }),
                Reply::Close(b) => {
                    let _ = stream.write_all(&b);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Reply::Nothing => Ok(()),
            };
            if written.is_err() {
                return;
            }
        }
    }
}
