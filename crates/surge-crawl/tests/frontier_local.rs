//! The frontier conformance suite on the local crawl-directory frontier
//! (each frontier in its own temp dir, kept alive for the test's length).

use surge_crawl::frontier::LocalFrontier;

async fn fresh(max_pages: Option<u64>) -> Option<LocalFrontier> {
    // Leaked: the directory must outlive the frontier; the OS temp dir is
    // cleaned by the test harness' machine, and each is small.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    // A small threshold so the suite runs over spilled seen-sets too.
    Some(LocalFrontier::open_with_threshold(&dir, max_pages, 64).expect("open"))
}

surge_crawl::frontier_conformance_tests!(fresh);
