//! URL normalisation before dedup, and a stable 64-bit fingerprint.
//!
//! [`normalise`] resolves a link against its page and returns the one
//! spelling every equivalent URL shares, or `None` for a link the crawl must
//! not follow:
//!
//! - only `http` and `https` (so `javascript:`, `mailto:`, `data:`, `tel:`,
//!   `ftp:` … are dropped), with a host;
//! - scheme and host lowercased, IDNs in punycode, a trailing dot of the
//!   host removed, default ports removed, an empty path made `/`, dot
//!   segments resolved (the `url` crate's WHATWG parsing);
//! - the fragment removed;
//! - percent-encoding normalised: escapes of unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) decoded, other escapes' hex uppercased; a `%`
//!   not followed by two hex digits makes the link garbage (`None`);
//! - query parameters matching a [`NormaliseOptions::strip_query`] glob
//!   removed, and an empty query removed;
//! - longer than [`NormaliseOptions::max_len`]: `None`.
//!
//! [`fingerprint`] is SipHash-1-3 with fixed keys over the normalised
//! string: the same on every process, machine and version.

use std::hash::Hasher;

use siphasher::sip::SipHasher13;
use url::Url;

/// Default longest normalised URL kept.
pub const DEFAULT_MAX_LEN: usize = 2048;

/// How links are normalised.
#[derive(Debug, Clone)]
pub struct NormaliseOptions {
    strip_query: Vec<Glob>,
    /// Longest normalised URL kept (bytes).
    pub max_len: usize,
}

impl Default for NormaliseOptions {
    fn default() -> Self {
        NormaliseOptions {
            strip_query: Vec::new(),
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

impl NormaliseOptions {
    /// Options stripping query parameters whose name matches one of
    /// `patterns` (`*` matches any run of characters, `?` one character;
    /// names compare case-insensitively).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> NormaliseOptions {
        NormaliseOptions {
            strip_query: patterns.iter().map(|p| Glob::new(p.as_ref())).collect(),
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Whether a query parameter named `name` is removed.
    pub fn strips(&self, name: &str) -> bool {
        self.strip_query.iter().any(|g| g.matches(name))
    }
}

/// A glob over a parameter name: `*` any run, `?` one character.
#[derive(Debug, Clone)]
struct Glob(Vec<u8>);

impl Glob {
    fn new(p: &str) -> Glob {
        Glob(p.to_ascii_lowercase().into_bytes())
    }

    fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        glob_match(&self.0, name.as_bytes())
    }
}

/// Iterative wildcard match with one backtrack point (linear in practice).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Resolves `href` against `base` and normalises it (see the module
/// documentation); `None` for a link that must not be followed.
pub fn normalise(base: &Url, href: &str, opts: &NormaliseOptions) -> Option<Url> {
    let href = href.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_control());
    if href.len() > opts.max_len * 2 || !valid_escapes(href) {
        return None;
    }
    let url = base.join(href).ok()?;
    normalise_url(url, opts)
}

/// Normalises an absolute URL string (a start URL); `None` as for
/// [`normalise`].
pub fn normalise_str(url: &str, opts: &NormaliseOptions) -> Option<Url> {
    let url = url.trim();
    if url.len() > opts.max_len * 2 || !valid_escapes(url) {
        return None;
    }
    normalise_url(Url::parse(url).ok()?, opts)
}

fn normalise_url(mut url: Url, opts: &NormaliseOptions) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return None;
    }
    let host = url.host_str()?;
    if host.is_empty() {
        return None;
    }
    if host.len() > 1 && host.ends_with('.') {
        let trimmed = host.trim_end_matches('.').to_owned();
        if trimmed.is_empty() {
            return None;
        }
        url.set_host(Some(&trimmed)).ok()?;
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in links are dropped rather than sent.
        url.set_username("").ok()?;
        url.set_password(None).ok()?;
    }
    url.set_fragment(None);
    let path = url.path();
    if needs_escape_fix(path) {
        let fixed = fix_escapes(path);
        url.set_path(&fixed);
    }
    if let Some(query) = url.query() {
        let query = if opts.strip_query.is_empty() {
            if query.is_empty() {
                None
            } else if needs_escape_fix(query) {
                Some(fix_escapes(query))
            } else {
                Some(query.to_owned())
            }
        } else {
            strip_params(query, opts)
        };
        match query {
            Some(q) if !q.is_empty() => {
                if Some(q.as_str()) != url.query() {
                    url.set_query(Some(&q));
                }
            }
            _ => url.set_query(None),
        }
    }
    if url.as_str().len() > opts.max_len {
        return None;
    }
    Some(url)
}

fn strip_params(query: &str, opts: &NormaliseOptions) -> Option<String> {
    let mut out = String::with_capacity(query.len());
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let name = pair.split('=').next().unwrap_or("");
        let decoded = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        if opts.strips(&decoded) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        if needs_escape_fix(pair) {
            out.push_str(&fix_escapes(pair));
        } else {
            out.push_str(pair);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Every `%` is followed by two hex digits.
fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr_percent(&b[i..]) {
        let at = i + off;
        if at + 2 >= b.len() || !(b[at + 1].is_ascii_hexdigit() && b[at + 2].is_ascii_hexdigit()) {
            return false;
        }
        i = at + 3;
    }
    true
}

fn memchr_percent(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'%')
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// Some escape encodes an unreserved character or has lowercase hex.
pub(crate) fn needs_escape_fix(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr_percent(&b[i..]) {
        let at = i + off;
        if at + 2 >= b.len() {
            return false;
        }
        let (h, l) = (b[at + 1], b[at + 2]);
        if h.is_ascii_lowercase() || l.is_ascii_lowercase() {
            return true;
        }
        if h.is_ascii_hexdigit()
            && l.is_ascii_hexdigit()
            && is_unreserved(hex_val(h) * 16 + hex_val(l))
        {
            return true;
        }
        i = at + 3;
    }
    false
}

/// Decodes escapes of unreserved characters and uppercases the others.
pub(crate) fn fix_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let v = hex_val(b[i + 1]) * 16 + hex_val(b[i + 2]);
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(b[i + 1].to_ascii_uppercase() as char);
                out.push(b[i + 2].to_ascii_uppercase() as char);
            }
            i += 3;
        } else {
            // The string is ASCII (the url crate escaped the rest).
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The URL's 64-bit fingerprint (SipHash-1-3, fixed keys, over the
/// normalised string): stable across processes, machines and versions.
pub fn fingerprint(url: &Url) -> u64 {
    fingerprint_str(url.as_str())
}

/// [`fingerprint`] of an already normalised URL string.
pub fn fingerprint_str(url: &str) -> u64 {
    let mut h = SipHasher13::new_with_keys(0x7375_7267_652d_6372, 0x6177_6c2d_6670_7631);
    h.write(url.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(base: &str, href: &str) -> Option<String> {
        normalise(
            &Url::parse(base).unwrap(),
            href,
            &NormaliseOptions::new(&["utm_*", "sessionid"]),
        )
        .map(String::from)
    }

    #[test]
    fn normalisation_table() {
        let b = "http://example.com/dir/page.html";
        let table: &[(&str, Option<&str>)] = &[
            ("HTTP://EXAMPLE.COM/a", Some("http://example.com/a")),
            ("http://Example.COM:80/a", Some("http://example.com/a")),
            ("https://example.com:443/", Some("https://example.com/")),
            (
                "https://example.com:8443/",
                Some("https://example.com:8443/"),
            ),
            ("http://example.com", Some("http://example.com/")),
            ("http://example.com./x", Some("http://example.com/x")),
            ("other.html#frag", Some("http://example.com/dir/other.html")),
            ("#top", Some("http://example.com/dir/page.html")),
            ("../up/./x/../y", Some("http://example.com/up/y")),
            ("/a/%7euser/%41b", Some("http://example.com/a/~user/Ab")),
            ("/a%2fb%3Ac", Some("http://example.com/a%2Fb%3Ac")),
            ("/caf%c3%a9", Some("http://example.com/caf%C3%A9")),
            ("/café", Some("http://example.com/caf%C3%A9")),
            ("/a?%7Ex=1", Some("http://example.com/a?~x=1")),
            ("/bad%zz", None),
            ("/bad%4", None),
            ("/bad%", None),
            (
                "/a?utm_source=x&id=3&UTM_medium=y",
                Some("http://example.com/a?id=3"),
            ),
            ("/a?utm_source=x", Some("http://example.com/a")),
            ("/a?sessionid=1&b=2&&c", Some("http://example.com/a?b=2&c")),
            ("/a?", Some("http://example.com/a")),
            ("  /spaced  ", Some("http://example.com/spaced")),
            ("javascript:void(0)", None),
            ("mailto:me@example.com", None),
            ("data:text/html,hi", None),
            ("tel:+123", None),
            ("ftp://example.com/x", None),
            ("http://", None),
            ("http://user:pw@example.com/p", Some("http://example.com/p")),
            ("//other.org/x", Some("http://other.org/x")),
            (
                "http://BÜCHER.example/",
                Some("http://xn--bcher-kva.example/"),
            ),
        ];
        for (href, want) in table {
            assert_eq!(n(b, href).as_deref(), *want, "href {href:?}");
        }
    }

    #[test]
    fn too_long_urls_are_dropped() {
        let base = Url::parse("http://a.test/").unwrap();
        let opts = NormaliseOptions {
            max_len: 40,
            ..NormaliseOptions::default()
        };
        assert!(normalise(&base, "/short", &opts).is_some());
        assert!(normalise(&base, &format!("/{}", "x".repeat(40)), &opts).is_none());
    }

    #[test]
    fn equivalent_spellings_share_a_fingerprint() {
        let base = Url::parse("http://a.test/").unwrap();
        let o = NormaliseOptions::default();
        let a = normalise(&base, "HTTP://A.TEST:80/%7Ex/./y#f", &o).unwrap();
        let b = normalise(&base, "/~x/y", &o).unwrap();
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint_str("http://a.test/~x/z"));
    }

    #[test]
    fn fingerprint_is_fixed_across_versions() {
        // A change here breaks every stored crawl directory and broker.
        let v = fingerprint_str("http://example.com/");
        assert_eq!(v, FIXED_EXAMPLE_FP, "fingerprint changed: {v:#x}");
    }

    const FIXED_EXAMPLE_FP: u64 = 0x9dce_8b51_b0f2_f05c;

    #[test]
    fn globs() {
        assert!(glob_match(b"utm_*", b"utm_source"));
        assert!(glob_match(b"*id", b"sessionid"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"abbc"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"utm_*", b"xutm_a"));
    }
}
