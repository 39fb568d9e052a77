//! Optional sitemap discovery: the `Sitemap:` lines of robots.txt and
//! `/sitemap.xml`, `<urlset>` and `<sitemapindex>` documents (the `<loc>`
//! of each entry), bounded: at most [`MAX_SITEMAPS`] documents of at most
//! [`MAX_SITEMAP_BYTES`] each, at most `max_urls` URLs in all. Gzipped
//! sitemaps served with `Content-Encoding` are decoded by the fetcher; a
//! `.xml.gz` file body is not.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use lol_html::{HtmlRewriter, Settings, element, text};
use surge_fetch::{BodyOutput, BodySink, FetchRequest, Fetcher};

/// Sitemap documents fetched at most per crawl.
pub const MAX_SITEMAPS: usize = 50;
/// Largest sitemap document read (the protocol's limit is 50 MB).
pub const MAX_SITEMAP_BYTES: u64 = 50 * 1024 * 1024;

/// What one sitemap document lists.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `<sitemapindex>`: the `<loc>`s are sitemaps.
    pub index: bool,
    /// The `<loc>` values.
    pub locs: Vec<String>,
}

/// Parses a sitemap (streaming; any markup error keeps what came before).
pub fn parse(body: &[u8], max: usize) -> Parsed {
    let locs = RefCell::new(Vec::new());
    let index = RefCell::new(false);
    let current = RefCell::new(String::new());
    {
        let mut rw = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![
                    element!("sitemapindex", |_e| {
                        *index.borrow_mut() = true;
                        Ok(())
                    }),
                    text!("loc", |t| {
                        let mut c = current.borrow_mut();
                        c.push_str(t.as_str());
                        if t.last_in_text_node() {
                            let v = crate::extract::decode_entities(c.trim()).into_owned();
                            c.clear();
                            let mut l = locs.borrow_mut();
                            if !v.is_empty() && l.len() < max {
                                l.push(v);
                            }
                        }
                        Ok(())
                    }),
                ],
                strict: false,
                ..Settings::new()
            },
            |_: &[u8]| {},
        );
        if rw.write(body).is_ok() {
            let _ = rw.end();
        }
    }
    Parsed {
        index: index.into_inner(),
        locs: locs.into_inner(),
    }
}

/// Fetches `roots` (and the sitemaps they index) and returns up to
/// `max_urls` page URLs, as written (not normalised).
pub async fn discover(fetcher: &Fetcher, roots: Vec<String>, max_urls: usize) -> Vec<String> {
    let mut queue: VecDeque<String> = roots.into();
    let mut fetched = HashSet::new();
    let mut urls = Vec::new();
    while let Some(sm) = queue.pop_front() {
        if fetched.len() >= MAX_SITEMAPS || urls.len() >= max_urls {
            break;
        }
        if !fetched.insert(sm.clone()) {
            continue;
        }
        let mut req = FetchRequest::get(sm.clone()).with_sink(BodySink::Buffer);
        req.max_body_bytes = Some(MAX_SITEMAP_BYTES);
        let f = fetcher.fetch(req).await;
        let BodyOutput::Bytes(body) = &f.body else {
            tracing::debug!(sitemap = sm, error = ?f.error, "sitemap not read");
            continue;
        };
        if f.error.is_some() {
            continue;
        }
        let p = parse(body, max_urls.saturating_sub(urls.len()).max(MAX_SITEMAPS));
        if p.index {
            queue.extend(p.locs);
        } else {
            let room = max_urls - urls.len();
            urls.extend(p.locs.into_iter().take(room));
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlset_and_index() {
        let set = br#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc> http://h.test/a </loc><lastmod>2024-01-01</lastmod></url>
  <url><loc>http://h.test/b?x=1&amp;y=2</loc></url>
</urlset>"#;
        let p = parse(set, 10);
        assert!(!p.index);
        assert_eq!(p.locs, vec!["http://h.test/a", "http://h.test/b?x=1&y=2"]);
        let idx =
            b"<sitemapindex><sitemap><loc>http://h.test/s1.xml</loc></sitemap></sitemapindex>";
        let p = parse(idx, 10);
        assert!(p.index);
        assert_eq!(p.locs, vec!["http://h.test/s1.xml"]);
        assert_eq!(parse(set, 1).locs.len(), 1, "bounded");
        // A truncated document keeps what it has (its last URL included).
        assert_eq!(
            parse(b"<urlset><url><loc>http://h.test/x", 5).locs,
            vec!["http://h.test/x"]
        );
    }
}
