//! robots (in progress).
