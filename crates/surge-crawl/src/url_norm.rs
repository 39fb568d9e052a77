//! url_norm (in progress).
