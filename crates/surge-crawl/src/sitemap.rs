//! sitemap (in progress).
