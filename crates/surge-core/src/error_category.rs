//! One error taxonomy for all of surge (see `DESIGN.md`, "Errors").

use serde::{Deserialize, Serialize};

/// The category a failure falls into, wherever it happened.
///
/// Metrics count errors per category and retry policies act on
/// [`ErrorCategory::retry_may_help`].
///
/// # Example
/// ```
/// use surge_core::ErrorCategory;
/// assert!(ErrorCategory::Timeout.retry_may_help());
/// assert!(!ErrorCategory::Validation.retry_may_help());
/// assert_eq!(ErrorCategory::HttpStatus.as_str(), "http_status");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCategory {
    /// A connection could not be made or was cut (refused, reset, DNS, TLS).
    Network,
    /// Something took longer than it was allowed to.
    Timeout,
    /// A peer answered with an error status (4xx / 5xx).
    HttpStatus,
    /// The input was wrong: retrying the same input gives the same answer.
    Validation,
    /// The work itself said no (a handler's own refusal, a conflict).
    Business,
    /// Our own side failed: overload, an unavailable dependency, a bug.
    System,
}

impl ErrorCategory {
    /// Every category, in a stable order (for metrics and reports).
    pub const ALL: [ErrorCategory; 6] = [
        ErrorCategory::Network,
        ErrorCategory::Timeout,
        ErrorCategory::HttpStatus,
        ErrorCategory::Validation,
        ErrorCategory::Business,
        ErrorCategory::System,
    ];

    /// The stable snake_case name used in metrics labels and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Network => "network",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::HttpStatus => "http_status",
            ErrorCategory::Validation => "validation",
            ErrorCategory::Business => "business",
            ErrorCategory::System => "system",
        }
    }

    /// Whether trying the same thing again may succeed.
    ///
    /// `HttpStatus` is answered per status by the caller (a 503 may pass, a
    /// 404 will not), so the category alone says no.
    pub const fn retry_may_help(self) -> bool {
        matches!(
            self,
            ErrorCategory::Network | ErrorCategory::Timeout | ErrorCategory::System
        )
    }
}

impl std::fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let names: std::collections::HashSet<_> =
            ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCategory::ALL.len());
    }
}
