//! A DNS cache with a TTL that merges concurrent lookups of one name.
//!
//! Thousands of URLs on one host, fetched at once, make one lookup, not
//! thousands (resolvers that cache but do not merge run out of file
//! descriptors and threads in exactly that moment). Names are resolved by
//! the system resolver (`getaddrinfo`: `/etc/hosts`, nsswitch, like curl
//! and aiohttp), which reports no TTL, so every answer lives for the
//! configured TTL. Failed lookups are not cached.
//!
//! The [`AddressPolicy`] is applied to the answer here, so the addresses
//! checked are the addresses connected to.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::Name;
use serde::Serialize;
use surge_core::cache::Cache;

use crate::error::{FetchError, FetchErrorKind};
use crate::ssrf::{AddressPolicy, non_public_reason};

/// Why a name gave no address to connect to.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DnsError {
    refused: bool,
    retryable: bool,
    message: String,
}

impl DnsError {
    pub(crate) fn to_fetch_error(&self) -> FetchError {
        let kind = if self.refused {
            FetchErrorKind::AddressRefused
        } else {
            FetchErrorKind::Dns
        };
        FetchError::new(kind, self.message.clone()).with_retryable(self.retryable)
    }
}

/// Counters of a [`DnsCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DnsStats {
    /// Names asked for.
    pub requests: u64,
    /// Lookups actually made (the rest were answered by the cache or
    /// merged into a lookup in flight).
    pub lookups: u64,
    /// Lookups that failed.
    pub failures: u64,
    /// Answers refused by the address policy.
    pub refused: u64,
}

struct Inner {
    cache: Cache<String, Arc<[IpAddr]>>,
    policy: AddressPolicy,
    requests: AtomicU64,
    lookups: AtomicU64,
    failures: AtomicU64,
    refused: AtomicU64,
}

/// The resolver the engine's connector uses (a `tower::Service<Name>`).
#[derive(Clone)]
pub struct DnsCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DnsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl DnsCache {
    /// A cache of at most `max_names` names, each kept for `ttl`, whose
    /// answers are filtered by `policy`.
    pub fn new(ttl: Duration, max_names: u64, policy: AddressPolicy) -> DnsCache {
        DnsCache {
            inner: Arc::new(Inner {
                cache: Cache::builder("fetch.dns")
                    .max_entries(max_names)
                    .ttl(ttl)
                    .build(),
                policy,
                requests: AtomicU64::new(0),
                lookups: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The cache underneath (hits, misses, coalesced waits; register it
    /// in an [`Observatory`](surge_core::observe::Observatory)).
    pub fn cache(&self) -> &Cache<String, Arc<[IpAddr]>> {
        &self.inner.cache
    }

    /// The counters so far.
    pub fn stats(&self) -> DnsStats {
        let i = &self.inner;
        DnsStats {
            requests: i.requests.load(Ordering::Relaxed),
            lookups: i.lookups.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            refused: i.refused.load(Ordering::Relaxed),
        }
    }

    /// The addresses of `host` that the policy allows.
    ///
    /// # Errors
    /// [`DnsError`]: the lookup failed, or every address was refused.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let inner = &self.inner;
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let key = host.to_ascii_lowercase();
        let name = key.clone();
        let all = inner
            .cache
            .get_or_compute(key, async move {
                inner.lookups.fetch_add(1, Ordering::Relaxed);
                lookup(&name).await
            })
            .await
            .map_err(|e: Arc<DnsError>| {
                inner.failures.fetch_add(1, Ordering::Relaxed);
                (*e).clone()
            })?;
        let allowed: Vec<IpAddr> = all
            .iter()
            .copied()
            .filter(|ip| !inner.policy.refuses(*ip))
            .collect();
        if allowed.is_empty() {
            inner.refused.fetch_add(1, Ordering::Relaxed);
            let ip = all[0];
            return Err(DnsError {
                refused: true,
                retryable: false,
                message: format!(
                    "{host} resolves to {ip}, a {} address, which this fetcher may not reach",
                    non_public_reason(ip).unwrap_or("refused")
                ),
            });
        }
        Ok(allowed)
    }
}

async fn lookup(name: &str) -> Result<Arc<[IpAddr]>, DnsError> {
    let fail = |message: String, retryable: bool| DnsError {
        refused: false,
        retryable,
        message,
    };
    match tokio::net::lookup_host((name, 0)).await {
        Ok(addrs) => {
            let mut ips: Vec<IpAddr> = Vec::new();
            for a in addrs {
                if !ips.contains(&a.ip()) {
                    ips.push(a.ip());
                }
            }
            if ips.is_empty() {
                return Err(fail(format!("{name}: no address"), false));
            }
            Ok(ips.into())
        }
        Err(e) => {
            // getaddrinfo's EAI_NONAME / EAI_NODATA: the name does not
            // exist, which a retry will not change; anything else (a
            // resolver timeout, EAI_AGAIN) may pass.
            let text = e.to_string();
            let permanent = text.contains("not known") || text.contains("No address associated");
            Err(fail(format!("cannot resolve {name}: {text}"), !permanent))
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<Name> for DnsCache {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = DnsError;
    type Future = BoxFuture<Result<Self::Response, DnsError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DnsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let ips = this.resolve(name.as_str()).await?;
            // The connector sets the port.
            Ok(ips
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}
