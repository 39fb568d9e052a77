//! The postgres broker (being written; see the module docs of `crate::broker`).
