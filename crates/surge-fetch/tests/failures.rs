//! Every failure lands in the right category, retries happen only where a
//! retry may help, stay within their bounds and honour Retry-After.

mod support;

use std::time::Duration;

use support::{RawServer, Server, closed_port};
use surge_core::ErrorCategory;
use surge_fetch::{FetchConfig, FetchErrorKind, FetchRequest, Fetched, Fetcher};

fn fetcher(max_retries: u32) -> Fetcher {
    Fetcher::new(FetchConfig {
        max_retries,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        ..FetchConfig::default()
    })
    .unwrap()
}

fn err(f: &Fetched) -> (ErrorCategory, FetchErrorKind, bool) {
    let e = f
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected an error: {f:?}"));
    (e.category(), e.kind(), e.retryable())
}

#[tokio::test]
async fn a_burst_of_500s_is_retried_until_it_passes() {
    let server = Server::start().await;
    let r = fetcher(3)
        .fetch(FetchRequest::get(server.url("/500/a/2")))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!((r.attempts, r.status), (3, Some(200)));
    assert_eq!(server.stats.arrivals("a").len(), 3);
}

#[tokio::test]
async fn retries_stop_at_their_bound() {
    let server = Server::start().await;
    let r = fetcher(2)
        .fetch(FetchRequest::get(server.url("/500/b/100")))
        .await;
    assert_eq!(
        err(&r),
        (ErrorCategory::HttpStatus, FetchErrorKind::Status, true)
    );
    assert_eq!((r.attempts, r.status), (3, Some(500)));
    assert_eq!(server.stats.arrivals("b").len(), 3);
}

#[tokio::test]
async fn statuses_a_retry_cannot_fix_are_not_retried() {
    let server = Server::start().await;
    let f = fetcher(3);
    for (status, key) in [(501, "s501"), (404, "s404"), (400, "s400"), (403, "s403")] {
        let r = f
            .fetch(FetchRequest::get(
                server.url(&format!("/count/{key}/{status}")),
            ))
            .await;
        assert_eq!(
            err(&r),
            (ErrorCategory::HttpStatus, FetchErrorKind::Status, false),
            "{status}"
        );
        assert_eq!(r.attempts, 1);
        assert_eq!(server.stats.arrivals(key).len(), 1, "{status}");
    }
    for (status, key) in [(502, "s502"), (503, "s503"), (429, "s429")] {
        let r = f
            .fetch(FetchRequest::get(
                server.url(&format!("/count/{key}/{status}")),
            ))
            .await;
        assert_eq!(err(&r).0, ErrorCategory::HttpStatus);
        assert_eq!(
            server.stats.arrivals(key).len(),
            4,
            "{status}: 1 + 3 retries"
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = Server::start().await;
    let r = fetcher(2)
        .fetch(FetchRequest::get(server.url("/429/c/1/1")))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(r.attempts, 2);
    let t = server.stats.arrivals("c");
    assert_eq!(t.len(), 2);
    // The server said one second: the retry came no sooner.
    assert!(
        t[1] - t[0] >= Duration::from_millis(990),
        "{:?}",
        t[1] - t[0]
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_maximum_is_not_waited_for() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        max_retry_after: Duration::from_secs(5),
        ..FetchConfig::default()
    })
    .unwrap();
    let r = f
        .fetch(FetchRequest::get(server.url("/429/d/1/3600")))
        .await;
    assert_eq!(err(&r).0, ErrorCategory::HttpStatus);
    assert_eq!(r.attempts, 1);
    assert!(r.error.unwrap().message().contains("Retry-After 3600"));
}

#[tokio::test]
async fn a_dropped_connection_is_a_retried_network_error() {
    let server = Server::start().await;
    let r = fetcher(2)
        .fetch(FetchRequest::get(server.url("/drop/e")))
        .await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Network, FetchErrorKind::Connection, true)
    );
    assert_eq!(r.attempts, 3);
    assert_eq!(server.stats.arrivals("e").len(), 3);
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let r = fetcher(1).fetch(FetchRequest::get(url)).await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Network, FetchErrorKind::Connect, true)
    );
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn malformed_answers_are_protocol_errors_and_not_retried() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nthis is no header\r\n\r\nbody"[..],
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2000 Weird\r\n\r\n",
    ] {
        let server = RawServer::start(reply).await;
        let r = fetcher(2).fetch(FetchRequest::get(server.url())).await;
        assert_eq!(
            err(&r),
            (ErrorCategory::Network, FetchErrorKind::Protocol, false),
            "{reply:?}"
        );
        assert_eq!(r.attempts, 1);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        read_timeout: Duration::from_millis(200),
        max_retries: 1,
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(1),
        ..FetchConfig::default()
    })
    .unwrap();
    let r = f.fetch(FetchRequest::get(server.url("/hang"))).await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Timeout, FetchErrorKind::ReadTimeout, true)
    );
    assert_eq!(r.attempts, 2);
    // Idle body: headers came, then silence.
    let r = f.fetch(FetchRequest::get(server.url("/stall"))).await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Timeout, FetchErrorKind::ReadTimeout, true)
    );
    assert_eq!(r.status, Some(200));
}

#[tokio::test]
async fn the_whole_request_timeout_covers_a_trickle() {
    let server = Server::start().await;
    let f = Fetcher::new(FetchConfig {
        request_timeout: Duration::from_millis(300),
        max_retries: 0,
        ..FetchConfig::default()
    })
    .unwrap();
    let r = f.fetch(FetchRequest::get(server.url("/slow/5000"))).await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Timeout, FetchErrorKind::Timeout, true)
    );
}

#[tokio::test]
async fn a_full_accept_queue_is_a_connect_timeout() {
    // A listener that never accepts, its backlog filled: new SYNs go
    // unanswered, as with a host that is down behind a firewall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            held.push(s);
        }
    }
    let f = Fetcher::new(FetchConfig {
        connect_timeout: Duration::from_millis(200),
        max_retries: 0,
        ..FetchConfig::default()
    })
    .unwrap();
    let r = f.fetch(FetchRequest::get(format!("http://{addr}/"))).await;
    assert_eq!(
        err(&r),
        (ErrorCategory::Timeout, FetchErrorKind::ConnectTimeout, true)
    );
    drop((held, listener));
}

#[tokio::test]
async fn bad_urls_are_validation_errors_that_send_nothing() {
    let f = fetcher(3);
    for url in [
        "not a url",
        "ftp://example.com/x",
        "http://",
        "mailto:a@b.c",
        "/relative",
    ] {
        let r = f.fetch(FetchRequest::get(url)).await;
        assert_eq!(
            err(&r),
            (ErrorCategory::Validation, FetchErrorKind::InvalidUrl, false),
            "{url}"
        );
        assert_eq!(r.attempts, 0);
    }
    assert_eq!(f.stats().requests, 0);
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error_not_retried() {
    let r = fetcher(3)
        .fetch(FetchRequest::get("http://no-such-host.invalid/"))
        .await;
    let (category, kind, _) = err(&r);
    assert_eq!(
        (category, kind),
        (ErrorCategory::Network, FetchErrorKind::Dns)
    );
}
