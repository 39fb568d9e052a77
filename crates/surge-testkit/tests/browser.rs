//! The browser helper itself: a page served on 127.0.0.1 is drawn, its
//! console errors are recorded, and the hosts it loaded from are listed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use surge_testkit::browser::{Browser, screenshot_stats};

const PAGE: &str = r#"<!doctype html><html><head><title>t</title>
<link rel="stylesheet" href="/style.css"></head>
<body><h1>drawn</h1><canvas id="c" width="200" height="100"></canvas>
<script>
const g = document.getElementById('c').getContext('2d');
g.fillStyle = '#c00'; g.fillRect(10, 10, 180, 80);
if (location.search === '?fail') { console.error('boom', 42); }
</script></body></html>"#;

/// Serves PAGE at every path but /style.css, on a free port, forever.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let (ctype, body) = if head.starts_with("GET /style.css") {
                (
                    "text/css",
                    "body { background: #eef; font: 20px sans-serif }",
                )
            } else {
                ("text/html", PAGE)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn a_local_page_is_drawn_and_its_errors_and_hosts_are_seen() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let port = serve();
    browser.open(&format!("http://127.0.0.1:{port}/")).await;
    browser
        .wait_until(
            "return document.readyState === 'complete';",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    assert_eq!(
        browser.resource_hosts().await,
        vec![format!("127.0.0.1:{port}")]
    );
    let stats = screenshot_stats(&browser.client().screenshot().await.unwrap());
    assert!(stats.colors > 3 && stats.non_background > 0.01, "{stats:?}");

    browser
        .open(&format!("http://127.0.0.1:{port}/?fail"))
        .await;
    let errors = browser.console_errors().await;
    assert_eq!(errors, vec!["console.error: boom 42".to_owned()]);
}

#[test]
fn a_blank_image_measures_blank() {
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 4, 4);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()
            .unwrap()
            .write_image_data(&[255; 48])
            .unwrap();
    }
    let stats = screenshot_stats(&png);
    assert_eq!((stats.colors, stats.non_background), (1, 0.0));
}
