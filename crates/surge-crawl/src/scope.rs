//! [`Scope`]: which URLs belong to a crawl.
//!
//! By default a URL is in scope when its host is one of the start URLs'
//! hosts (any port, either scheme). With `subdomains`, hosts ending in
//! `.<start host>` are in too. With `same_host: false` every host is. Then,
//! when `allow` patterns are given, the URL must match one of them, and it
//! must match none of the `deny` patterns (regexes over the whole
//! normalised URL).

use regex::RegexSet;
use url::Url;

use crate::config::ScopeConfig;
use crate::error::CrawlError;

/// A compiled scope.
#[derive(Debug, Clone)]
pub struct Scope {
    hosts: Vec<String>,
    same_host: bool,
    subdomains: bool,
    allow: Option<RegexSet>,
    deny: Option<RegexSet>,
}

impl Scope {
    /// Compiles `config` for the crawl starting at `start_urls`.
    ///
    /// # Errors
    /// [`CrawlError::Config`] for a bad regex or a start URL without a host.
    pub fn new(config: &ScopeConfig, start_urls: &[Url]) -> Result<Scope, CrawlError> {
        let set = |field: &str, list: &[String]| -> Result<Option<RegexSet>, CrawlError> {
            if list.is_empty() {
                return Ok(None);
            }
            RegexSet::new(list)
                .map(Some)
                .map_err(|e| CrawlError::Config(format!("{field}: {e}")))
        };
        let mut hosts = Vec::new();
        for u in start_urls {
            let host = u
                .host_str()
                .ok_or_else(|| CrawlError::Config(format!("start URL {u} has no host")))?;
            let host = host.strip_prefix("www.").unwrap_or(host).to_owned();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(Scope {
            hosts,
            same_host: config.same_host,
            subdomains: config.subdomains,
            allow: set("scope.allow", &config.allow)?,
            deny: set("scope.deny", &config.deny)?,
        })
    }

    /// Whether `url` (normalised) belongs to the crawl.
    pub fn allows(&self, url: &Url) -> bool {
        if self.same_host {
            let Some(host) = url.host_str() else {
                return false;
            };
            if !self.host_allowed(host) {
                return false;
            }
        }
        let s = url.as_str();
        if let Some(allow) = &self.allow
            && !allow.is_match(s)
        {
            return false;
        }
        if let Some(deny) = &self.deny
            && deny.is_match(s)
        {
            return false;
        }
        true
    }

    fn host_allowed(&self, host: &str) -> bool {
        // `www.example.com` and `example.com` are one site.
        let bare = host.strip_prefix("www.").unwrap_or(host);
        self.hosts.iter().any(|h| {
            bare == h
                || (self.subdomains
                    && bare.len() > h.len()
                    && bare.ends_with(h.as_str())
                    && bare.as_bytes()[bare.len() - h.len() - 1] == b'.')
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(cfg: ScopeConfig) -> Scope {
        Scope::new(&cfg, &[Url::parse("http://example.com/start").unwrap()]).unwrap()
    }

    fn ok(s: &Scope, u: &str) -> bool {
        s.allows(&Url::parse(u).unwrap())
    }

    #[test]
    fn same_host_by_default() {
        let s = scope(ScopeConfig::default());
        assert!(ok(&s, "http://example.com/a"));
        assert!(ok(&s, "https://example.com:8443/a"));
        assert!(ok(&s, "http://www.example.com/a"));
        assert!(!ok(&s, "http://blog.example.com/a"));
        assert!(!ok(&s, "http://notexample.com/a"));
        assert!(!ok(&s, "http://other.org/a"));
    }

    #[test]
    fn subdomains_when_asked() {
        let s = scope(ScopeConfig {
            subdomains: true,
            ..ScopeConfig::default()
        });
        assert!(ok(&s, "http://blog.example.com/a"));
        assert!(ok(&s, "http://a.b.example.com/a"));
        assert!(!ok(&s, "http://badexample.com/a"));
    }

    #[test]
    fn allow_and_deny() {
        let s = scope(ScopeConfig {
            allow: vec!["/docs/".into(), "/start$".into()],
            deny: vec![r"\.pdf$".into(), "/docs/private".into()],
            ..ScopeConfig::default()
        });
        assert!(ok(&s, "http://example.com/start"));
        assert!(ok(&s, "http://example.com/docs/a"));
        assert!(!ok(&s, "http://example.com/blog/a"));
        assert!(!ok(&s, "http://example.com/docs/a.pdf"));
        assert!(!ok(&s, "http://example.com/docs/private/x"));
        let any = scope(ScopeConfig {
            same_host: false,
            ..ScopeConfig::default()
        });
        assert!(ok(&any, "http://other.org/a"));
    }
}
