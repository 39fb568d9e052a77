//! Redirects are followed by the engine up to a bound; the address policy
//! holds on literal addresses, on resolved names and on every hop.

mod support;

use std::sync::Arc;

use support::{Server, Stats};
use surge_core::ErrorCategory;
use surge_fetch::{
    AddressPolicy, BodyOutput, BodySink, FetchConfig, FetchErrorKind, FetchRequest, Fetcher,
};

fn fetcher(policy: AddressPolicy) -> Fetcher {
    Fetcher::new(FetchConfig {
        address_policy: policy,
        max_redirects: 5,
        max_retries: 2,
        ..FetchConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_redirect_loop_stops_at_the_bound() {
    let server = Server::start().await;
    let r = fetcher(AddressPolicy::allow_all())
        .fetch(FetchRequest::get(server.url("/redirect/loop")))
        .await;
    let e = r.error.expect("loop");
    assert_eq!(
        (e.category(), e.kind(), e.retryable()),
        (
            ErrorCategory::HttpStatus,
            FetchErrorKind::TooManyRedirects,
            false
        )
    );
    assert_eq!(r.redirects, 5);
    // The first request and five redirects, in one attempt.
    assert_eq!(server.stats.requests(), 6);
}

#[tokio::test]
async fn a_chain_within_the_bound_is_followed() {
    let server = Server::start().await;
    let r = fetcher(AddressPolicy::allow_all())
        .fetch(FetchRequest::get(server.url("/redirect/chain/3")))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!((r.redirects, r.status), (3, Some(200)));
    assert_eq!(
        r.final_url.as_deref(),
        Some(server.url("/redirect/chain/0").as_str())
    );
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_and_307_keeps_it() {
    let server = Server::start().await;
    let f = fetcher(AddressPolicy::allow_all());
    let body = serde_json::json!({"k": "v"});
    let r = f
        .fetch(
            FetchRequest::post_json(server.url("/redirect/see-other"), &body)
                .with_sink(BodySink::Buffer),
        )
        .await;
    let BodyOutput::Bytes(b) = r.body else {
        panic!("{:?}", r.error)
    };
    assert!(String::from_utf8_lossy(&b).starts_with("GET "));
    let r = f
        .fetch(
            FetchRequest::post_json(server.url("/redirect/temporary"), &body)
                .with_sink(BodySink::Buffer),
        )
        .await;
    let BodyOutput::Bytes(b) = r.body else {
        panic!("{:?}", r.error)
    };
    let text = String::from_utf8_lossy(&b);
    assert!(
        text.starts_with("POST ") && text.ends_with("{\"k\":\"v\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn private_literals_and_names_are_refused_before_any_connection() {
    let server = Server::start().await;
    let f = fetcher(AddressPolicy::public_only());
    let port = server.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://2130706433:{port}/ok"),
        format!("http://0x7f.1:{port}/ok"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://100.100.100.200/".to_owned(),
    ] {
        let r = f.fetch(FetchRequest::get(&url)).await;
        let e = r.error.unwrap_or_else(|| panic!("{url} must be refused"));
        assert_eq!(
            (e.category(), e.kind(), e.retryable()),
            (
                ErrorCategory::Validation,
                FetchErrorKind::AddressRefused,
                false
            ),
            "{url}: {e}"
        );
        assert_eq!(r.attempts, 1, "{url}: refusals are not retried");
    }
    assert_eq!(server.stats.requests(), 0);
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    // The first server is allowed on purpose; it redirects to servers and
    // addresses that are not.
    let allowed = Server::start_on("127.0.0.1", Arc::new(Stats::default())).await;
    let other = Server::start_on("127.0.0.2", Arc::new(Stats::default())).await;
    let policy = AddressPolicy::public_only().allowing("127.0.0.1/32".parse().unwrap());
    let f = fetcher(policy);
    for target in [
        other.url("/ok"),
        format!("http://[::ffff:127.0.0.2]:{}/ok", other.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.1.2.3/".to_owned(),
    ] {
        let r = f
            .fetch(FetchRequest::get(
                allowed.url(&format!("/redirect/to?{target}")),
            ))
            .await;
        let e = r
            .error
            .unwrap_or_else(|| panic!("redirect to {target} must be refused"));
        assert_eq!(e.kind(), FetchErrorKind::AddressRefused, "{target}: {e}");
        assert_eq!(r.redirects, 1);
    }
    assert_eq!(other.stats.requests(), 0);
    // The allowed host itself (by address and by name) still works.
    let r = f
        .fetch(FetchRequest::get(allowed.url("/redirect/chain/1")))
        .await;
    assert!(r.is_ok(), "{:?}", r.error);
    let by_name = format!("http://localhost:{}/ok", allowed.addr.port());
    assert!(f.fetch(FetchRequest::get(by_name)).await.is_ok());
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_refused() {
    let server = Server::start().await;
    let r = fetcher(AddressPolicy::allow_all())
        .fetch(FetchRequest::get(
            server.url("/redirect/to?file:///etc/passwd"),
        ))
        .await;
    let e = r.error.expect("bad redirect");
    assert_eq!(
        (e.category(), e.kind()),
        (ErrorCategory::HttpStatus, FetchErrorKind::BadRedirect)
    );
}
