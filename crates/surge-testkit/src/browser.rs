//! A real headless Chromium for tests, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver` packages; `fantoccini` as the client).
//!
//! [`Browser::launch`] follows the same skip rule as the backends: with no
//! Chromium on the machine it prints `SKIP browser: …` and returns `None` —
//! unless `SURGE_REQUIRE_BACKENDS` names `browser`, and then it panics.
//!
//! Every page opened through [`Browser::open`] records, from before its first
//! script runs, the console errors and uncaught exceptions it sees
//! ([`Browser::console_errors`]); [`Browser::resource_hosts`] lists the hosts
//! of every resource the page loaded, so a test can prove nothing left
//! 127.0.0.1; [`screenshot_stats`] tells a blank screenshot from a drawn one.
//!
//! ```no_run
//! # async fn t() {
//! let Some(browser) = surge_testkit::browser::Browser::launch().await else { return };
//! browser.open("http://127.0.0.1:8000/").await;
//! assert!(browser.console_errors().await.is_empty());
//! let png = browser.client().screenshot().await.unwrap();
//! assert!(surge_testkit::browser::screenshot_stats(&png).colors > 4);
//! # }
//! ```

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// Env var naming the Chromium binary (default `/usr/bin/chromium`).
pub const CHROMIUM_ENV: &str = "SURGE_TEST_CHROMIUM";
/// Env var naming the ChromeDriver binary (default `/usr/bin/chromedriver`).
pub const CHROMEDRIVER_ENV: &str = "SURGE_TEST_CHROMEDRIVER";

/// Installed before any page script: keeps console errors, uncaught
/// exceptions and Content-Security-Policy violations in
/// `window.__surgeErrors`.
const ERROR_RECORDER: &str = r#"
(() => {
  const errors = [];
  Object.defineProperty(window, '__surgeErrors', { value: errors });
  const original = console.error.bind(console);
  console.error = (...args) => { errors.push('console.error: ' + args.map(String).join(' ')); original(...args); };
  window.addEventListener('error', e => errors.push('uncaught: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'error')), true);
  window.addEventListener('unhandledrejection', e => errors.push('unhandled rejection: ' + String(e.reason)));
  // A request the page's Content-Security-Policy stopped never shows as a
  // resource: record the attempt.
  document.addEventListener('securitypolicyviolation', e => errors.push('blocked by the content security policy: ' + e.blockedURI + ' (' + e.violatedDirective + ')'));
})();
"#;

/// A headless Chromium with its ChromeDriver; both are killed on drop.
pub struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_pid", &self.driver.id())
            .finish_non_exhaustive()
    }
}

fn binary(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var(var)
        .ok()
        .filter(|p| !p.trim().is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.exists().then_some(path)
}

/// The Chromium and ChromeDriver binaries, or `None` after printing the
/// SKIP line (see [`crate::backend_url`] for the rule).
///
/// # Panics
/// When one is missing and `SURGE_REQUIRE_BACKENDS` names `browser`.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = binary(CHROMIUM_ENV, "/usr/bin/chromium");
    let driver = binary(CHROMEDRIVER_ENV, "/usr/bin/chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            crate::skip_or_panic(
                "browser",
                "chromium or chromedriver not found (apt-get install chromium chromium-driver, \
                 or set SURGE_TEST_CHROMIUM / SURGE_TEST_CHROMEDRIVER)",
            );
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port for chromedriver")
}

/// `POST /session/{id}/goog/cdp/execute`: a Chrome DevTools command through
/// ChromeDriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params}).to_string();
        (http::Method::POST, Some(body))
    }
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium with a
    /// fresh profile, a 1280×900 window and no background networking (this
    /// machine's network is closed; Chromium's own update/sync calls would
    /// fail and slow it down). `None` when Chromium is not installed.
    ///
    /// # Panics
    /// When the binaries exist but the browser cannot be started.
    pub async fn launch() -> Option<Browser> {
        Browser::launch_with_size(1280, 900).await
    }

    /// [`Browser::launch`] with a viewport of exactly `width`×`height` CSS
    /// pixels (e.g. 390×844 for a phone; screenshots have that size).
    ///
    /// # Panics
    /// When the binaries exist but the browser cannot be started.
    pub async fn launch_with_size(width: u32, height: u32) -> Option<Browser> {
        let (chromium, chromedriver) = binaries()?;
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object"),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver at {url} did not start a session: {e}"),
            }
        };
        let browser = Browser {
            client,
            driver,
            _profile: profile,
        };
        browser
            .client
            .issue_cmd(Cdp {
                cmd: "Page.addScriptToEvaluateOnNewDocument",
                params: json!({"source": ERROR_RECORDER}),
            })
            .await
            .expect("install the console-error recorder");
        // The window size alone is not the page's: headless Chromium keeps a
        // window at least 500 px wide and takes its frame off the height.
        // The viewport is set exactly, as a phone's would be.
        browser
            .client
            .issue_cmd(Cdp {
                cmd: "Emulation.setDeviceMetricsOverride",
                params: json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            })
            .await
            .expect("set the viewport size");
        Some(browser)
    }

    /// The WebDriver client, for anything this wrapper does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for its load event.
    ///
    /// # Panics
    /// When the page cannot be loaded.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns
    /// its value.
    ///
    /// # Panics
    /// When the script throws.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Console errors, uncaught exceptions and Content-Security-Policy
    /// violations of the current page so far.
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self
            .eval("return Array.from(window.__surgeErrors || []);", vec![])
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// The host (`host:port`) of the page and of every resource it loaded
    /// (scripts, styles, images, fetch/XHR, event streams), deduplicated.
    pub async fn resource_hosts(&self) -> Vec<String> {
        let v = self
            .eval(
                "const urls = [location.href].concat(performance.getEntriesByType('resource').map(e => e.name));\
                 return Array.from(new Set(urls.map(u => new URL(u).host)));",
                vec![],
            )
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Waits until `script` (a function body) returns true, or `timeout`.
    ///
    /// # Panics
    /// When it has not within `timeout`.
    pub async fn wait_until(&self, script: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(script, vec![]).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not true within {timeout:?}: {script}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium is ChromeDriver's child and exits with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What a screenshot shows, roughly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenshotStats {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Distinct colours (capped at 4096).
    pub colors: usize,
    /// Share of pixels that differ from the most common colour (the
    /// background), 0..=1.
    pub non_background: f64,
}

/// Decodes a PNG screenshot and measures it: a blank page has one colour
/// and `non_background == 0`.
///
/// # Panics
/// When `png` is not a PNG image.
pub fn screenshot_stats(png: &[u8]) -> ScreenshotStats {
    let mut decoder = png::Decoder::new(png);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG image");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::<[u8; 4], usize>::new();
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        let mut key = [255u8; 4];
        key[..channels.min(4)].copy_from_slice(&px[..channels.min(4)]);
        if counts.len() < 4096 || counts.contains_key(&key) {
            *counts.entry(key).or_default() += 1;
        }
    }
    let total = (info.width as usize * info.height as usize).max(1);
    let background = counts.values().copied().max().unwrap_or(0);
    ScreenshotStats {
        width: info.width,
        height: info.height,
        colors: counts.len(),
        non_background: (total - background) as f64 / total as f64,
    }
}
