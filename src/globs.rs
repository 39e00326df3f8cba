//! Compiled glob lists (`gpt-*`, `claude-sonnet-*`) for model and endpoint allowlists.

use std::collections::HashMap;
use std::sync::Arc;

use glob::{MatchOptions, Pattern, PatternError};
use serde_saphyr::Spanned;

use crate::problem::Problems;

/// Matching is case-sensitive and `*` may cross `/` (model ids like `org/model` are opaque).
const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// A list of globs compiled once per snapshot; a value is allowed if any glob matches.
///
/// Shared: agents with the same allowlist hold one compiled list.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    patterns: Arc<[Pattern]>,
}

impl Globs {
    /// Compiles every pattern; the error names the first bad one.
    pub fn compile<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        let patterns = patterns
            .into_iter()
            .map(Pattern::new)
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(Globs { patterns })
    }

    /// Whether any glob matches `value` in full.
    pub fn matches(&self, value: &str) -> bool {
        self.patterns.iter().any(|p| p.matches_with(value, OPTIONS))
    }

    /// Whether `value` is matched by a glob without wildcards (an exact, finite name).
    ///
    /// Metrics label a model only when it is bounded like this, so a hostile agent cannot
    /// blow up label cardinality with invented model names that a wildcard lets through.
    pub fn matches_literally(&self, value: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.as_str() == value && is_literal(p.as_str()))
    }

    /// The globs as written.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(Pattern::as_str)
    }
}

/// Whether a glob has no wildcard characters and so matches exactly one string.
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '['])
}

/// Compiles glob lists from policy, once per distinct list: agents mostly share a few
/// allowlists, so a 10 000-agent policy compiles a handful of lists, not 10 000.
///
/// `'f` is the lifetime of the parsed policy files the patterns are borrowed from.
#[derive(Default)]
pub struct GlobCache<'f> {
    compiled: HashMap<Vec<&'f str>, Globs>,
}

impl<'f> GlobCache<'f> {
    /// The compiled list, or `None` with each bad glob reported as "bad `what` glob".
    pub fn compile(
        &mut self,
        p: &mut Problems<'_>,
        globs: &'f [Spanned<String>],
        what: &str,
    ) -> Option<Globs> {
        let patterns: Vec<&'f str> = globs.iter().map(|g| g.value.as_str()).collect();
        if let Some(compiled) = self.compiled.get(&patterns) {
            return Some(compiled.clone());
        }
        let mut ok = true;
        for g in globs {
            if let Err(e) = Globs::compile([g.value.as_str()]) {
                p.error(g, format!("bad {what} glob `{}`: {}", g.value, e.msg));
                ok = false;
            }
        }
        let compiled = ok
            .then(|| Globs::compile(patterns.iter().copied()).ok())
            .flatten()?;
        self.compiled.insert(patterns, compiled.clone());
        Some(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_matches_suffixes_and_slashes() {
        let globs = Globs::compile(["gpt-*", "claude-sonnet-*"]).unwrap();
        assert!(globs.matches("gpt-4o-mini"));
        assert!(globs.matches("gpt-org/x"));
        assert!(globs.matches("claude-sonnet-4-5"));
        assert!(!globs.matches("claude-opus-4"));
        assert!(!globs.matches("GPT-4o"));
        assert!(!globs.matches("xgpt-4o"));
    }

    #[test]
    fn bad_glob_is_an_error() {
        assert!(Globs::compile(["gpt-[4"]).is_err());
    }

    #[test]
    fn literal_matches_only_exact_wildcard_free_entries() {
        let globs = Globs::compile(["gpt-4o-mini", "claude-*"]).unwrap();
        assert!(globs.matches_literally("gpt-4o-mini"));
        assert!(!globs.matches_literally("claude-x"));
    }
}
