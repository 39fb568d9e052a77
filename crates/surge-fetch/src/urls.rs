//! URL parsing with the origins cached.
//!
//! Most of a `url::Url::parse` of a typical URL is its host (IDNA mapping,
//! the IPv4 forms), and the URLs of a batch share few origins. A plain
//! absolute `http(s)://host[:port]/path…` is therefore parsed as its path
//! joined to its origin, whose parsed form is kept: by the URL standard
//! (and the `url` crate, which follows it) a reference starting with one
//! `/` keeps the base's scheme and authority and parses its path exactly as
//! the path of an absolute URL, so the result is the same URL (a test
//! compares the two on tricky inputs). Anything else (other schemes,
//! userinfo, percent signs or non-ASCII in the authority, spaces or
//! control characters anywhere, `//` or `\` after the authority) takes
//! the ordinary parse.

use std::collections::HashMap;
use std::sync::Mutex;

use url::{ParseError, Url};

/// Origins kept at most (then the cache starts over).
const MAX_ORIGINS: usize = 4096;

/// A URL parser that remembers origins.
#[derive(Debug, Default)]
pub(crate) struct UrlParser {
    origins: Mutex<HashMap<Box<str>, Url>>,
}

impl UrlParser {
    /// `text` parsed, as [`Url::parse`] would, or joined to `base` as
    /// [`Url::join`] would when there is one.
    pub(crate) fn parse(&self, base: Option<&Url>, text: &str) -> Result<Url, ParseError> {
        // An absolute URL joined to a base is the URL itself.
        let Some((origin, rest)) = split_plain(text) else {
            return match base {
                Some(base) => base.join(text),
                None => Url::parse(text),
            };
        };
        let cached = self
            .origins
            .lock()
            .expect("origins poisoned")
            .get(origin)
            .cloned();
        let base = match cached {
            Some(base) => base,
            None => {
                let base = Url::parse(origin)?;
                let mut origins = self.origins.lock().expect("origins poisoned");
                if origins.len() >= MAX_ORIGINS {
                    origins.clear();
                }
                origins.insert(origin.into(), base.clone());
                base
            }
        };
        if rest.is_empty() {
            return Ok(base);
        }
        base.join(rest)
    }
}

/// `http(s)://authority` and the rest, which starts with one `/` (or is
/// empty), when `text` is plain enough for the join to equal the parse.
fn split_plain(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    // Printable ASCII only: no spaces, tabs, newlines or controls (which the
    // parser trims or strips), no non-ASCII (IDNA, percent-encoding).
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    let after_scheme = if text.starts_with("http://") {
        7
    } else if text.starts_with("https://") {
        8
    } else {
        return None;
    };
    let tail = &bytes[after_scheme..];
    let end = tail
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .map_or(bytes.len(), |i| after_scheme + i);
    let authority = &bytes[after_scheme..end];
    if authority.is_empty() || authority.iter().any(|b| matches!(b, b'@' | b'%')) {
        return None;
    }
    let rest = &text[end..];
    match rest.as_bytes() {
        [] => Some((text, "")),
        [b'/'] => Some((&text[..end], rest)),
        [b'/', next, ..] if !matches!(next, b'/' | b'\\') => Some((&text[..end], rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_gives_what_the_parse_gives() {
        let parser = UrlParser::default();
        let inputs = [
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:80/x",
            "https://example.com:443/a/b?c=d#e",
            "http://EXAMPLE.com/A/./b/../c",
            "http://example.com/%2e%2E/x/%2e/y",
            "http://example.com/a/..",
            "http://example.com/a?q=1/../2&r=%zz",
            "http://example.com/a#frag/../x",
            "http://example.com/a\\b\\..\\c",
            "http://example.com/a|b{c}^`",
            "http://0x7f.1/",
            "http://127.1/p",
            "http://[::1]:9000/v6",
            "http://[0:0::1]/v6",
            "http://xn--nxasmq6b.com/",
            "http://example.com:/empty-port",
            "http://example.com:99999/too-big",
            "http://exa mple.com/",
            "http://example.com//double",
            "http://example.com/\\x",
            "http://user:pw@example.com/",
            "http://ex%41mple.com/",
            "http://例え.jp/",
            "http://example.com/é",
            "http:/one-slash",
            "http:///three",
            "HTTP://example.com/",
            "ftp://example.com/",
            " http://example.com/ ",
            "http://example.com/\tx",
            "http://a..b/",
            "http://example.com?q",
            "http://example.com#f",
            "http://a.b.c.d.e.f.0x10/",
            "/relative/path",
            "relative",
            "?query",
        ];
        // Twice: the second round takes the cached origins.
        for _ in 0..2 {
            for text in inputs {
                let ours = parser.parse(None, text).map(String::from);
                let theirs = Url::parse(text).map(String::from);
                assert_eq!(ours, theirs, "{text:?}");
                let base = Url::parse("http://base.example/dir/page").unwrap();
                let ours = parser.parse(Some(&base), text).map(String::from);
                let theirs = base.join(text).map(String::from);
                assert_eq!(ours, theirs, "{text:?} on a base");
            }
        }
        assert!(!parser.origins.lock().unwrap().is_empty());
    }
}
