//! A problem found while compiling policy: where it is and what is wrong.
//!
//! Every domain reports through [`Problems`] and goes on, so `warden check` shows all problems
//! of a policy at once; any error refuses the whole policy.

use std::fmt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_saphyr::{Location, Spanned};

/// How bad a problem is: errors refuse the whole policy, warnings are reported and loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, printed as `file:line:col: message` (the format editors and CI annotate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub severity: Severity,
    pub message: String,
}

impl Problem {
    /// An error at a known position.
    pub fn error(file: &Path, at: Location, message: impl Into<String>) -> Self {
        Self::new(file, at, Severity::Error, message.into())
    }

    /// A warning at a known position.
    pub fn warning(file: &Path, at: Location, message: impl Into<String>) -> Self {
        Self::new(file, at, Severity::Warning, message.into())
    }

    /// An error about a whole file (unreadable, not found): reported at 1:1.
    pub fn file_error(file: &Path, message: impl Into<String>) -> Self {
        Problem {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    fn new(file: &Path, at: Location, severity: Severity, message: String) -> Self {
        Problem {
            file: file.to_path_buf(),
            line: at.line().max(1),
            column: at.column().max(1),
            severity,
            message,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {label}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Whether `url` is an absolute `http://` or `https://` URL with a host (collectors, sinks).
pub fn is_http_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

/// Collects problems for one file while compiling, so every check can report and go on.
pub struct Problems<'a> {
    pub file: &'a Path,
    pub found: &'a mut Vec<Problem>,
}

impl Problems<'_> {
    /// Whether `at` stands as the definition of `what` (a section or a named entry defined
    /// once across every file): when `first` says where it already is, this one is an error
    /// naming that place.
    pub fn first_definition<T>(
        &mut self,
        first: Option<&Origin<'_>>,
        at: &Spanned<T>,
        what: impl std::fmt::Display,
    ) -> bool {
        match first {
            Some(first) => {
                self.error(at, format!("{what} is already defined at {first}"));
                false
            }
            None => true,
        }
    }

    pub fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.found
            .push(Problem::error(self.file, at.referenced, message));
    }

    pub fn warning<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.found
            .push(Problem::warning(self.file, at.referenced, message));
    }

    /// An RFC 3339 time, or an error naming `field`.
    pub fn timestamp(&mut self, at: &Spanned<String>, field: &str) -> Option<Timestamp> {
        let parsed = at.value.parse::<Timestamp>().ok();
        if parsed.is_none() {
            let message = format!(
                "`{field}` must be an RFC 3339 time like 2027-01-31T00:00:00Z, got `{}`",
                at.value
            );
            self.error(at, message);
        }
        parsed
    }
}

/// Where something was first defined, for "already defined at" errors. Formatted only when
/// such an error is reported: a 10 000-agent policy should not format 20 000 strings.
#[derive(Clone, Copy)]
pub struct Origin<'f> {
    file: &'f Path,
    line: u64,
}

impl Origin<'_> {
    /// The position of `at` in `file`.
    pub fn of<'f, T>(file: &'f Path, at: &Spanned<T>) -> Origin<'f> {
        Origin {
            file,
            line: at.referenced.line(),
        }
    }
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}
