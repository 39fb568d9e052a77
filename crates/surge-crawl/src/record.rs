//! [`PageRecord`]: one line of a crawl's JSONL output.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use surge_core::ErrorCategory;

/// What the crawl found at one URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PageRecord {
    /// The URL asked for (normalised).
    pub url: String,
    /// The URL of the last answer (after redirects).
    pub final_url: String,
    /// The last answer's status (`None`: no answer).
    pub status: Option<u16>,
    /// Links followed from a start URL to here (start URLs: 0).
    pub depth: u32,
    /// The `<title>` text.
    pub title: Option<String>,
    /// `<meta name="description" content="…">`.
    pub description: Option<String>,
    /// The answer's `Content-Type`.
    pub content_type: Option<String>,
    /// Body bytes received (decoded).
    pub content_length: u64,
    /// `<a href>` / `<area href>` links in the page.
    pub links: u32,
    /// `<img>` elements in the page.
    pub images: u32,
    /// When the fetch ended.
    pub fetched_at: DateTime<Utc>,
    /// How long the fetch took, in milliseconds.
    pub elapsed_ms: f64,
    /// Why the page failed, if it did.
    pub error: Option<PageError>,
    /// The page's http(s) links, normalised, deduplicated, in document
    /// order, off-site ones included (with `outlinks` on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlinks: Option<Vec<String>>,
}

/// A page's failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PageError {
    /// The category (`network`, `timeout`, `http_status`, `validation`, …).
    pub kind: ErrorCategory,
    /// What happened.
    pub message: String,
}
