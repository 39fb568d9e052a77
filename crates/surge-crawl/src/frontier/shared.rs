//! What the broker frontiers ([`super::postgres`], [`super::redis`]) share:
//! fingerprints of entries, lease tokens, batches deduplicated by
//! fingerprint.

use std::collections::BTreeMap;

use crate::error::FrontierError;
use crate::frontier::{FrontierEntry, Lease};
use crate::url_norm::fingerprint_str;

/// `entries` keyed by fingerprint, the first of each fingerprint kept, in
/// fingerprint order (so that concurrent writers insert in one order and
/// never deadlock on each other's rows).
pub(crate) fn by_fingerprint(entries: Vec<FrontierEntry>) -> BTreeMap<u64, FrontierEntry> {
    let mut out = BTreeMap::new();
    for e in entries {
        out.entry(fingerprint_str(&e.url)).or_insert(e);
    }
    out
}

/// A lease token: the entry's fingerprint and the lease call's nonce, so a
/// token names its row without the URL being parsed again.
pub(crate) fn token(fp: u64, nonce: &str) -> String {
    format!("{fp:016x}.{nonce}")
}

/// The fingerprint and nonce of a lease's token.
pub(crate) fn parse_token(lease: &Lease) -> Result<(u64, &str), FrontierError> {
    let unknown = || FrontierError::UnknownLease(lease.token.clone());
    let (fp, nonce) = lease.token.split_once('.').ok_or_else(unknown)?;
    if fp.len() != 16 || nonce.is_empty() {
        return Err(unknown());
    }
    let fp = u64::from_str_radix(fp, 16).map_err(|_| unknown())?;
    Ok((fp, nonce))
}

/// Milliseconds of `d`, saturating.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_unknown() {
        let lease = |token: &str| Lease {
            entry: FrontierEntry {
                url: "http://a.test/".into(),
                depth: 0,
            },
            token: token.into(),
        };
        let t = token(0xdead_beef, "abc");
        assert_eq!(parse_token(&lease(&t)).unwrap(), (0xdead_beef, "abc"));
        for bad in ["", "x", "00000000deadbeef.", "zz.abc", "1.abc"] {
            assert!(
                matches!(
                    parse_token(&lease(bad)),
                    Err(FrontierError::UnknownLease(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn batches_keep_the_first_of_each_url() {
        let e = |url: &str, depth| FrontierEntry {
            url: url.into(),
            depth,
        };
        let m = by_fingerprint(vec![
            e("http://a.test/x", 1),
            e("http://a.test/y", 1),
            e("http://a.test/x", 2),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&fingerprint_str("http://a.test/x")].depth, 1);
    }
}
