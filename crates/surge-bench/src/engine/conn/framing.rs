//! HTTP/1.1 response framing for the lean client, on bytes only (no I/O):
//! where a response head ends, how its body is delimited (RFC 9112 §6.3),
//! whether the connection stays open, and a chunked-body decoder that
//! counts data bytes and throws them away.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

/// Most response headers read (hyper's default too).
const MAX_HEADERS: usize = 100;
/// Most trailer fields after a chunked body.
const MAX_TRAILERS: usize = 32;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// No body (HEAD, 1xx, 204, 304, or `content-length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Bytes of the head, final blank line included.
    pub(super) len: usize,
    pub(super) status: u16,
    pub(super) body: Body,
    /// The connection may carry another request after this response.
    pub(super) keep_alive: bool,
}

impl Head {
    /// A 1xx response other than 101: another head follows.
    pub(super) fn informational(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Whether a comma-separated header value holds `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last transfer coding of a `transfer-encoding` value is
/// `chunked`.
fn ends_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// A `content-length` value (a list of equal values is accepted, as RFC
/// 9110 §8.6 allows).
fn content_length(value: &[u8]) -> Option<u64> {
    if !value.is_empty() && value.len() <= 19 && value.iter().all(u8::is_ascii_digit) {
        return Some(
            value
                .iter()
                .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
        );
    }
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// Parses the head at the start of `buf`: `Ok(None)` when it is not all
/// there yet. `head_request`: the request was a `HEAD` (no body follows,
/// whatever the head says).
///
/// # Errors
/// What is wrong with the head, in words.
pub(super) fn head(buf: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut headers = [const { MaybeUninit::<Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    ) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let mut length = None;
    let mut chunked = None;
    let mut close = !http11;
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        // Most headers are none of the three: the length tells at once.
        if !matches!(name.len(), 10 | 14 | 17) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length(h.value).ok_or_else(|| {
                format!(
                    "malformed response head: content-length {:?}",
                    String::from_utf8_lossy(h.value)
                )
            })?;
            if length.is_some_and(|l| l != n) {
                return Err("malformed response head: differing content-length values".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = Some(ends_chunked(h.value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if !http11 && has_token(h.value, b"keep-alive") {
                close = false;
            }
        }
    }
    if status == 101 {
        return Err("the server switched protocols (101): not an HTTP/1.1 response".into());
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Body::Chunked,
            // Another final coding: the body runs to the close.
            (Some(false), _) => Body::UntilClose,
            (None, Some(0)) => Body::Empty,
            (None, Some(n)) => Body::Length(n),
            (None, None) => Body::UntilClose,
        }
    };
    Ok(Some(Head {
        len,
        status,
        keep_alive: !close && body != Body::UntilClose,
        body,
    }))
}

/// Where a chunked-body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// This many data bytes of the current chunk to go.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then a blank line.
    Trailers,
    Done,
}

/// Decodes a chunked body piece by piece: counts its data bytes and
/// discards them.
#[derive(Debug)]
pub(super) struct Chunked {
    state: State,
    /// Data bytes so far.
    pub(super) bytes: u64,
}

impl Chunked {
    pub(super) fn new() -> Chunked {
        Chunked {
            state: State::Size,
            bytes: 0,
        }
    }

    /// Whether the body has ended.
    pub(super) fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can of `buf` and returns how many bytes it used.
    /// Less than all of `buf` while not [`done`](Chunked::done): the rest
    /// is an incomplete line, and more bytes must be read after it.
    ///
    /// # Errors
    /// What is wrong with the body, in words.
    pub(super) fn feed(&mut self, buf: &[u8]) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Done => return Ok(used),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(Status::Complete((n, 0))) => {
                        used += n;
                        self.state = State::Trailers;
                    }
                    Ok(Status::Complete((n, size))) => {
                        used += n;
                        self.state = State::Data(size);
                    }
                    Ok(Status::Partial) => return Ok(used),
                    Err(_) => return Err("malformed chunked body: bad chunk size line".into()),
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    self.bytes += take;
                    self.state = if take == left {
                        State::DataEnd
                    } else {
                        State::Data(left - take)
                    };
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        used += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(used),
                    _ => return Err("malformed chunked body: no CRLF after a chunk".into()),
                },
                State::Trailers => {
                    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                    match httparse::parse_headers(rest, &mut fields) {
                        Ok(Status::Complete((n, _))) => {
                            used += n;
                            self.state = State::Done;
                        }
                        Ok(Status::Partial) => return Ok(used),
                        Err(e) => return Err(format!("malformed chunked body trailer: {e}")),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Result<(u64, usize), String> {
        let mut c = Chunked::new();
        let used = c.feed(bytes)?;
        assert!(c.done(), "not done after {used} of {}", bytes.len());
        Ok((c.bytes, used))
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let body =
            b"4;name=value\r\nWiki\r\n5\r\npedia\r\n0;last\r\nExpires: never\r\nX: y\r\n\r\nNEXT";
        assert_eq!(whole(body), Ok((9, body.len() - 4)));
        // Fed one byte at a time, keeping what was not used.
        let mut c = Chunked::new();
        let mut pending = Vec::new();
        for &b in &body[..body.len() - 4] {
            pending.push(b);
            let used = c.feed(&pending).unwrap();
            pending.drain(..used);
        }
        assert!(c.done() && pending.is_empty());
        assert_eq!(c.bytes, 9);
        assert!(whole(b"4\r\nWikiXX").is_err());
        assert!(whole(b"zz\r\n").is_err());
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        let h = |s: &str, head_req| head(s.as_bytes(), head_req).unwrap().unwrap();
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", false);
        assert_eq!(
            (r.status, r.body, r.keep_alive),
            (200, Body::Length(12), true)
        );
        let r = h("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true);
        assert_eq!(r.body, Body::Empty);
        let r = h(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n",
            false,
        );
        assert_eq!(r.body, Body::Empty);
        let r = h(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        );
        assert_eq!(r.body, Body::Chunked);
        let r = h(
            "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(!r.keep_alive);
        let r = h("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r = h(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        );
        assert!(r.keep_alive);
        let r = h("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.body, r.keep_alive), (Body::UntilClose, false));
        let r = h("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false);
        assert!(r.informational() && r.body == Body::Empty);
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
        assert!(head(b"HTTP/1.1 abc OK\r\n\r\n", false).is_err());
        assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", false).is_err());
        assert!(
            head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n",
                false
            )
            .is_err()
        );
        assert_eq!(
            h("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", false).body,
            Body::Length(7)
        );
    }
}
