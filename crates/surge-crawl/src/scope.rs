//! scope (in progress).
