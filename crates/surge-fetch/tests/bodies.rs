//! Bodies are streamed into their sink, never past the maximum size, and
//! memory stays flat whatever their size.

mod support;

use support::{Server, peak_rss};
use surge_core::ErrorCategory;
use surge_fetch::{BodyOutput, BodySink, FetchConfig, FetchErrorKind, FetchRequest, Fetcher};

fn fetcher(max_body_bytes: u64) -> Fetcher {
    Fetcher::new(FetchConfig {
        max_body_bytes,
        max_retries: 0,
        ..FetchConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_huge_body_past_the_maximum_is_refused() {
    let server = Server::start().await;
    let r = fetcher(1 << 20)
        .fetch(FetchRequest::get(server.url("/bytes/50000000")))
        .await;
    let e = r.error.expect("too large");
    assert_eq!(
        (e.category(), e.kind(), e.retryable()),
        (
            ErrorCategory::Validation,
            FetchErrorKind::BodyTooLarge,
            false
        )
    );
    assert_eq!(r.status, Some(200));
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_maximum() {
    let server = Server::start().await;
    let r = fetcher(4 << 20)
        .fetch(FetchRequest::get(server.url("/endless")))
        .await;
    assert_eq!(
        r.error.expect("endless").kind(),
        FetchErrorKind::BodyTooLarge
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_on_huge_bodies() {
    let server = Server::start().await;
    let f = fetcher(1 << 40);
    // Warm up (pool, TLS roots, buffers), then fetch 4 × 32 MiB at once.
    let r = f
        .fetch(FetchRequest::get(server.url("/bytes/1000000")))
        .await;
    assert!(r.is_ok());
    let before = peak_rss();
    let size: u64 = 32 << 20;
    let all = futures_util::future::join_all(
        (0..4).map(|_| f.fetch(FetchRequest::get(server.url(&format!("/bytes/{size}"))))),
    )
    .await;
    for r in &all {
        assert!(r.is_ok(), "{:?}", r.error);
        assert_eq!(r.bytes, size);
    }
    let grown = peak_rss().saturating_sub(before);
    // 128 MiB went through at once; buffering would have grown the peak by
    // as much. It grew by less than half of one body.
    assert!(grown < size / 2, "peak RSS grew by {grown} bytes");
}

#[tokio::test]
async fn sinks_count_hash_keep_or_write_the_body() {
    let server = Server::start().await;
    let f = fetcher(1 << 30);
    let url = server.url("/bytes/200000");
    let counted = f.fetch(FetchRequest::get(&url)).await;
    assert_eq!((counted.bytes, &counted.body), (200_000, &BodyOutput::None));

    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(vec![b'a'; 200_000]));
    let hashed = f
        .fetch(FetchRequest::get(&url).with_sink(BodySink::Sha256))
        .await;
    assert_eq!(hashed.body, BodyOutput::Sha256(expected));

    let kept = f
        .fetch(FetchRequest::get(&url).with_sink(BodySink::Buffer))
        .await;
    let BodyOutput::Bytes(b) = kept.body else {
        panic!("{:?}", kept.body)
    };
    assert!(b.len() == 200_000 && b.iter().all(|c| *c == b'a'));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("body.bin");
    let written = f
        .fetch(FetchRequest::get(&url).with_sink(BodySink::File(path.clone())))
        .await;
    assert_eq!(written.body, BodyOutput::File(path.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 200_000);

    // A body that fails leaves no file behind.
    let small = fetcher(1000);
    let failed = small
        .fetch(FetchRequest::get(&url).with_sink(BodySink::File(path.clone())))
        .await;
    assert_eq!(failed.error.unwrap().kind(), FetchErrorKind::BodyTooLarge);
    assert!(!path.exists());
}

#[tokio::test]
async fn compressed_bodies_are_decoded_and_bad_ones_are_errors() {
    let server = Server::start().await;
    let f = fetcher(1 << 20);
    let r = f
        .fetch(FetchRequest::get(server.url("/gzip")).with_sink(BodySink::Buffer))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(r.bytes, "hello gzip ".len() as u64 * 1000);
    let r = f.fetch(FetchRequest::get(server.url("/badgzip"))).await;
    let e = r.error.expect("bad gzip");
    assert_eq!(
        (e.category(), e.kind()),
        (ErrorCategory::Network, FetchErrorKind::Decode)
    );
    // The maximum counts decoded bytes: a small compressed body that
    // expands past it is refused.
    let tiny = fetcher(1000);
    let r = tiny.fetch(FetchRequest::get(server.url("/gzip"))).await;
    assert_eq!(
        r.error.expect("too large").kind(),
        FetchErrorKind::BodyTooLarge
    );
}

#[tokio::test]
async fn post_json_sends_the_body_and_the_user_agent() {
    let server = Server::start().await;
    let f = fetcher(1 << 20);
    let r = f
        .fetch(
            FetchRequest::post_json(server.url("/echo"), &serde_json::json!({"a": 1}))
                .with_sink(BodySink::Buffer),
        )
        .await;
    let BodyOutput::Bytes(b) = r.body else {
        panic!()
    };
    let text = String::from_utf8_lossy(&b);
    assert!(text.starts_with("POST surge/"), "{text}");
    assert!(text.ends_with("{\"a\":1}"), "{text}");
}

#[tokio::test]
async fn plain_http_is_http1_and_h2c_by_prior_knowledge_is_http2() {
    let server = Server::start().await;
    let version = |f: Fetcher| {
        let url = server.url("/version");
        async move {
            let r = f
                .fetch(FetchRequest::get(url).with_sink(BodySink::Buffer))
                .await;
            assert!(r.is_ok(), "{:?}", r.error);
            match r.body {
                BodyOutput::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("{other:?}"),
            }
        }
    };
    let h1 = fetcher(1 << 20);
    assert_eq!(version(h1.clone()).await, "HTTP/1.1");
    // The second request reuses the pooled connection.
    assert_eq!(version(h1.clone()).await, "HTTP/1.1");
    assert_eq!(h1.stats().idle_connections, 1);
    let h2 = Fetcher::new(FetchConfig {
        http2_prior_knowledge: true,
        ..FetchConfig::default()
    })
    .unwrap();
    assert_eq!(version(h2.clone()).await, "HTTP/2.0");
    // hyper-util's pool, not the HTTP/1.1 one.
    assert_eq!(h2.stats().idle_connections, 0);
}
