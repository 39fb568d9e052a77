//! Measures the seen-set's memory per million URLs, outside any test:
//! inserts N distinct URL fingerprints and reports the process's resident
//! memory growth (VmRSS from /proc/self/status, Linux) and the set's own
//! accounting.
//!
//! `cargo run --release -p surge-crawl --example seen_memory -- 2000000 262144`
//! (arguments: URLs, in-memory threshold).

use surge_crawl::seen::SeenSet;
use surge_crawl::url_norm::fingerprint_str;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threshold: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(surge_crawl::seen::DEFAULT_THRESHOLD);
    let dir = tempfile::tempdir()?;
    let before = rss_kib();
    let mut set = SeenSet::new(dir.path(), threshold)?;
    let started = std::time::Instant::now();
    let mut url = String::with_capacity(64);
    for i in 0..n {
        url.clear();
        use std::fmt::Write;
        let _ = write!(url, "https://example.com/section/{}/page-{i}.html", i % 97);
        set.insert(fingerprint_str(&url))?;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = rss_kib();
    let file = std::fs::metadata(dir.path().join("seen.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "urls {n}, threshold {threshold}: {} spills, set accounting {:.1} MiB, RSS growth {:.1} MiB \
         ({:.2} MiB per million URLs), spill file {:.1} MiB, {:.2} s ({:.0} inserts/s)",
        set.spills(),
        set.memory_bytes() as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0 / (n as f64 / 1e6),
        file as f64 / 1048576.0,
        secs,
        n as f64 / secs
    );
    Ok(())
}
