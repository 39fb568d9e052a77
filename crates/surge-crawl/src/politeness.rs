//! politeness (in progress).
