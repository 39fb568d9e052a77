//! Streaming extraction from one page with [lol_html]: title, meta
//! description, link and image counts, outlinks and `<base href>`, with the
//! charset taken from the BOM, the `Content-Type` header or a
//! `<meta charset>` (in that order; UTF-8 otherwise) through encoding_rs.
//!
//! Extraction never fails: malformed markup is tokenised as browsers do,
//! undecodable bytes become U+FFFD, and a parser error (a memory limit)
//! keeps what was found before it.

use std::cell::{Cell, RefCell};

use encoding_rs::{Encoding, UTF_8};
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, MemorySettings, Settings, element, text};
use url::Url;

/// Longest title / description kept (characters).
pub const MAX_TEXT_CHARS: usize = 1024;
/// Most hrefs collected from one page (links are still counted past it).
pub const MAX_HREFS: usize = 10_000;
/// Memory lol_html may use for buffering one page.
const PARSER_MEMORY: usize = 8 * 1024 * 1024;

/// What one page says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The first `<title>`'s text, whitespace collapsed.
    pub title: Option<String>,
    /// `<meta name="description">`'s content, whitespace collapsed.
    pub description: Option<String>,
    /// `<a href>` and `<area href>` elements.
    pub links: u32,
    /// `<img>` elements.
    pub images: u32,
    /// The raw `href`s of the links, in document order (at most
    /// [`MAX_HREFS`]).
    pub hrefs: Vec<String>,
    /// The first `<base href>`, resolved against the page URL.
    pub base: Option<Url>,
    /// The encoding the page was decoded with.
    pub encoding: &'static str,
}

/// Whether a `Content-Type` is HTML (`text/html`, `application/xhtml+xml`);
/// without one, whether the body looks like HTML.
pub fn is_html(content_type: Option<&str>, body: &[u8]) -> bool {
    match content_type {
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("text/html")
                || mime.eq_ignore_ascii_case("application/xhtml+xml")
        }
        None => {
            let head = &body[..body.len().min(512)];
            let head = String::from_utf8_lossy(head).to_ascii_lowercase();
            let t = head.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
            t.starts_with("<!doctype html")
                || t.starts_with("<html")
                || t.contains("<head")
                || t.contains("<body")
        }
    }
}

/// The `charset` parameter of a `Content-Type`.
fn header_charset(content_type: Option<&str>) -> Option<&'static Encoding> {
    let ct = content_type?;
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| Encoding::for_label(v.trim().trim_matches(['"', '\'']).as_bytes()))?
    })
}

/// A `charset` declared by a `<meta>` in the first 1024 bytes.
fn meta_charset(body: &[u8]) -> Option<&'static Encoding> {
    let head = &body[..body.len().min(1024)];
    let lower = head.to_ascii_lowercase();
    let mut from = 0;
    while let Some(off) = find(&lower[from..], b"<meta") {
        let start = from + off;
        let end = lower[start..]
            .iter()
            .position(|&c| c == b'>')
            .map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(c) = find(tag, b"charset") {
            let rest = &tag[c + 7..];
            let rest = trim_ascii_start(rest);
            if let Some(rest) = rest.strip_prefix(b"=") {
                let rest = trim_ascii_start(rest);
                let rest = rest
                    .strip_prefix(b"\"")
                    .or_else(|| rest.strip_prefix(b"'"))
                    .unwrap_or(rest);
                let label: Vec<u8> = rest
                    .iter()
                    .copied()
                    .take_while(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b':' | b'.')
                    })
                    .collect();
                if let Some(enc) = Encoding::for_label(&label) {
                    // WHATWG: a meta declaring UTF-16 means UTF-8.
                    return Some(
                        if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                            UTF_8
                        } else if enc == encoding_rs::X_USER_DEFINED {
                            encoding_rs::WINDOWS_1252
                        } else {
                            enc
                        },
                    );
                }
            }
        }
        from = end.max(start + 1);
    }
    None
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The encoding of `body`: BOM, then header, then meta, then UTF-8.
pub fn detect_encoding(content_type: Option<&str>, body: &[u8]) -> &'static Encoding {
    if let Some((enc, _)) = Encoding::for_bom(body) {
        return enc;
    }
    header_charset(content_type)
        .or_else(|| meta_charset(body))
        .unwrap_or(UTF_8)
}

/// Decodes character references (`&amp;`, `&#39;`, `&#x2F;`, the common
/// named ones) in an attribute value or text (lol_html hands them over
/// raw). Unknown references stay as written, like browsers do.
pub fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map(|e| e + 1);
        let (name, consumed) = match end {
            Some(e) if rest[e..].starts_with(';') => (&rest[1..e], e + 1),
            Some(e) => (&rest[1..e], e),
            None => (&rest[1..], rest.len()),
        };
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let v = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse::<u32>().ok(),
            };
            v.map(|v| {
                char::from_u32(v)
                    .filter(|c| *c != '\0')
                    .unwrap_or('\u{fffd}')
            })
        } else {
            match name {
                "amp" | "AMP" => Some('&'),
                "lt" | "LT" => Some('<'),
                "gt" | "GT" => Some('>'),
                "quot" | "QUOT" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                "copy" => Some('©'),
                "reg" => Some('®'),
                "hellip" => Some('…'),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                "laquo" => Some('«'),
                "raquo" => Some('»'),
                "eacute" => Some('é'),
                "egrave" => Some('è'),
                "agrave" => Some('à'),
                "uuml" => Some('ü'),
                "ouml" => Some('ö'),
                "auml" => Some('ä'),
                "szlig" => Some('ß'),
                _ => None,
            }
        };
        match decoded {
            Some(c) if !name.is_empty() => {
                out.push(c);
                rest = &rest[consumed..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Appends `s` to `out` with runs of whitespace collapsed, up to
/// [`MAX_TEXT_CHARS`].
fn push_collapsed(out: &mut String, s: &str, len: &mut usize) {
    for c in s.chars() {
        if *len >= MAX_TEXT_CHARS {
            return;
        }
        if c.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
                *len += 1;
            }
        } else {
            out.push(c);
            *len += 1;
        }
    }
}

fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_TEXT_CHARS));
    let mut len = 0;
    push_collapsed(&mut out, s, &mut len);
    out.truncate(out.trim_end().len());
    out
}

/// Extracts from an HTML `body` fetched from `page`.
pub fn extract(body: &[u8], content_type: Option<&str>, page: &Url) -> Extracted {
    let enc = detect_encoding(content_type, body);
    // lol_html speaks ASCII-compatible encodings only: UTF-16 pages are
    // decoded to UTF-8 first.
    let (input, enc) = match AsciiCompatibleEncoding::new(enc) {
        Some(_) => (std::borrow::Cow::Borrowed(body), enc),
        None => {
            let (text, _, _) = enc.decode(body);
            (
                std::borrow::Cow::Owned(text.into_owned().into_bytes()),
                UTF_8,
            )
        }
    };
    let body = match Encoding::for_bom(&input) {
        Some((_, bom)) => &input[bom..],
        None => &input[..],
    };
    let title = RefCell::new(String::new());
    let title_len = Cell::new(0usize);
    let title_state = Cell::new(0u8); // 0 none yet, 1 inside, 2 done
    let description: RefCell<Option<String>> = RefCell::new(None);
    let links = Cell::new(0u32);
    let images = Cell::new(0u32);
    let hrefs: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let base: RefCell<Option<Url>> = RefCell::new(None);
    {
        let settings = Settings {
            element_content_handlers: vec![
                element!("a[href], area[href]", |el| {
                    links.set(links.get().saturating_add(1));
                    let mut h = hrefs.borrow_mut();
                    if h.len() < MAX_HREFS
                        && let Some(href) = el.get_attribute("href")
                    {
                        h.push(decode_entities(&href).into_owned());
                    }
                    Ok(())
                }),
                element!("img", |_el| {
                    images.set(images.get().saturating_add(1));
                    Ok(())
                }),
                element!("title", |_el| {
                    if title_state.get() == 0 {
                        title_state.set(1);
                    }
                    Ok(())
                }),
                text!("title", |t| {
                    if title_state.get() == 1 {
                        let mut len = title_len.get();
                        push_collapsed(&mut title.borrow_mut(), t.as_str(), &mut len);
                        title_len.set(len);
                        if t.last_in_text_node() {
                            title_state.set(2);
                        }
                    }
                    Ok(())
                }),
                element!("meta[name][content]", |el| {
                    let mut d = description.borrow_mut();
                    if d.is_none()
                        && el
                            .get_attribute("name")
                            .is_some_and(|n| n.trim().eq_ignore_ascii_case("description"))
                    {
                        *d = el
                            .get_attribute("content")
                            .map(|c| collapse(&decode_entities(&c)));
                    }
                    Ok(())
                }),
                element!("base[href]", |el| {
                    let mut b = base.borrow_mut();
                    if b.is_none()
                        && let Some(href) = el.get_attribute("href")
                    {
                        *b = page.join(decode_entities(href.trim()).as_ref()).ok();
                    }
                    Ok(())
                }),
            ],
            encoding: AsciiCompatibleEncoding::new(enc)
                .unwrap_or_else(AsciiCompatibleEncoding::utf_8),
            memory_settings: MemorySettings {
                max_allowed_memory_usage: PARSER_MEMORY,
                ..MemorySettings::new()
            },
            strict: false,
            ..Settings::new()
        };
        let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
        let mut failed = false;
        for chunk in body.chunks(64 * 1024) {
            if let Err(e) = rewriter.write(chunk) {
                tracing::debug!(url = %page, error = %e, "html parser stopped early");
                failed = true;
                break;
            }
        }
        if !failed && let Err(e) = rewriter.end() {
            tracing::debug!(url = %page, error = %e, "html parser stopped early");
        }
    }
    let title = title.into_inner();
    let title = decode_entities(title.trim_end());
    let title = title.trim();
    Extracted {
        title: (title_state.get() > 0)
            .then(|| title.to_owned())
            .filter(|t| !t.is_empty()),
        description: description.into_inner().filter(|d| !d.is_empty()),
        links: links.get(),
        images: images.get(),
        hrefs: hrefs.into_inner(),
        base: base.into_inner(),
        encoding: enc.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("http://h.test/dir/p.html").unwrap()
    }

    #[test]
    fn basic_fields() {
        let html = br#"<!doctype html><html><head><title>  Hello
            World </title><meta name="Description" content=" A  page "><base href="/b/"></head>
            <body><a href="x.html">x</a><a href='/y'>y</a><a>no href</a><area href="z">
            <img src=a.png><img><svg><title>not this</title></svg></body></html>"#;
        let e = extract(html, Some("text/html"), &page());
        assert_eq!(e.title.as_deref(), Some("Hello World"));
        assert_eq!(e.description.as_deref(), Some("A page"));
        assert_eq!((e.links, e.images), (3, 2));
        assert_eq!(e.hrefs, vec!["x.html", "/y", "z"]);
        assert_eq!(e.base.as_ref().map(Url::as_str), Some("http://h.test/b/"));
        assert_eq!(e.encoding, "UTF-8");
    }

    #[test]
    fn malformed_html_still_extracts() {
        let html = b"<html><title>Broken & <b>bold</title><p><a href=one>1<a href=\"two\">2</div></span><img src=x <a href=three>3<table><td><script>if (a<b) x</script></tr><a href=four>";
        let e = extract(html, Some("text/html"), &page());
        assert_eq!(e.title.as_deref(), Some("Broken & <b>bold"));
        assert!(
            e.hrefs.starts_with(&["one".to_owned(), "two".to_owned()]),
            "{:?}",
            e.hrefs
        );
        assert!(e.hrefs.contains(&"four".to_owned()), "{:?}", e.hrefs);
        // Unterminated everything, invalid UTF-8, NULs.
        let e = extract(
            b"<title>a\xff\xfe\x00b<a href=\"q",
            Some("text/html"),
            &page(),
        );
        assert!(e.title.unwrap().starts_with('a'));
        let e = extract(b"", Some("text/html"), &page());
        assert_eq!(
            e,
            Extracted {
                encoding: "UTF-8",
                ..Extracted::default()
            }
        );
    }

    #[test]
    fn latin1_from_header_and_meta() {
        let (body, _, _) =
            encoding_rs::WINDOWS_1252.encode("<title>Café déjà vu</title><a href=\"/é\">");
        let e = extract(&body, Some("text/html; charset=ISO-8859-1"), &page());
        assert_eq!(e.title.as_deref(), Some("Café déjà vu"));
        assert_eq!(e.hrefs, vec!["/é"]);
        let mut with_meta = b"<head><meta charset=\"latin1\">".to_vec();
        with_meta.extend_from_slice(&body);
        let e = extract(&with_meta, Some("text/html"), &page());
        assert_eq!(e.title.as_deref(), Some("Café déjà vu"));
        assert_eq!(e.encoding, "windows-1252");
    }

    #[test]
    fn shift_jis_from_http_equiv_meta() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS
            .encode("<title>日本語のページ</title><meta name=description content=\"説明\">");
        let mut body =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">".to_vec();
        body.extend_from_slice(&sjis);
        let e = extract(&body, Some("text/html"), &page());
        assert_eq!(e.title.as_deref(), Some("日本語のページ"));
        assert_eq!(e.description.as_deref(), Some("説明"));
        assert_eq!(e.encoding, "Shift_JIS");
    }

    #[test]
    fn bom_wins_and_utf16_works() {
        let (utf16, _, _) = encoding_rs::UTF_16LE.encode("x");
        assert!(utf16.is_empty() || utf16.len() == 1); // encoding_rs never encodes to UTF-16
        let mut body = vec![0xFF, 0xFE];
        for u in "<title>Ünï</title><img>".encode_utf16() {
            body.extend_from_slice(&u.to_le_bytes());
        }
        let e = extract(&body, Some("text/html; charset=iso-8859-1"), &page());
        assert_eq!(e.title.as_deref(), Some("Ünï"));
        assert_eq!(e.images, 1);
        let e = extract(
            b"\xEF\xBB\xBF<title>bom</title>",
            Some("text/html; charset=shift_jis"),
            &page(),
        );
        assert_eq!(e.title.as_deref(), Some("bom"));
    }

    #[test]
    fn huge_input_is_bounded() {
        let mut html = String::from("<title>");
        html.push_str(&"t".repeat(10 * MAX_TEXT_CHARS));
        html.push_str("</title>");
        for i in 0..(MAX_HREFS + 500) {
            html.push_str(&format!("<a href=\"/p{i}\"></a>"));
        }
        html.push_str("<img>");
        let e = extract(html.as_bytes(), None, &page());
        assert_eq!(e.title.unwrap().chars().count(), MAX_TEXT_CHARS);
        assert_eq!(e.links as usize, MAX_HREFS + 500);
        assert_eq!(e.hrefs.len(), MAX_HREFS);
        assert_eq!(e.images, 1);
    }

    #[test]
    fn character_references() {
        assert_eq!(
            decode_entities("a&amp;b&lt;&#39;&#x2F;&#X41;&nbsp;"),
            "a&b<'/A\u{a0}"
        );
        assert_eq!(
            decode_entities("&unknown; & &amp &#xZZ; &"),
            "&unknown; & & &#xZZ; &"
        );
        let e = extract(
            br#"<title>Tom &amp; Jerry</title><a href="/q?a=1&amp;b=2">"#,
            Some("text/html"),
            &page(),
        );
        assert_eq!(e.title.as_deref(), Some("Tom & Jerry"));
        assert_eq!(e.hrefs, vec!["/q?a=1&b=2"]);
    }

    #[test]
    fn content_types() {
        assert!(is_html(Some("text/html; charset=utf-8"), b""));
        assert!(is_html(Some("application/xhtml+xml"), b""));
        assert!(!is_html(Some("application/pdf"), b"<html>"));
        assert!(!is_html(Some("text/plain"), b"<html>"));
        assert!(is_html(None, b"  <!DOCTYPE html><p>"));
        assert!(!is_html(None, b"%PDF-1.4"));
    }
}
