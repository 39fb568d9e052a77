//! seen (in progress).
