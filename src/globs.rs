//! Compiled glob lists: names (`gpt-*`, `claude-sonnet-*`, actions, hosts), where `*` matches
//! anything, and paths (endpoints, service grants), where `*` stays within one segment and
//! `**` (a whole segment) crosses `/`.

use std::collections::HashMap;
use std::sync::Arc;

use glob::{MatchOptions, Pattern, PatternError};
use serde_saphyr::Spanned;

use crate::problem::Problems;

/// Names: matching is case-sensitive and `*` may cross `/` (model ids like `org/model` are
/// opaque).
const NAMES: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

/// Paths: `*`, `?` and `[…]` never match `/`, so `/public/*` cannot reach `/public/x/../..`
/// on a server that normalises differently, nor a deeper path the grant did not mean.
const PATHS: MatchOptions = MatchOptions {
    require_literal_separator: true,
    ..NAMES
};

/// A list of globs compiled once per snapshot; a value is allowed if any glob matches.
///
/// Shared: agents with the same allowlist hold one compiled list.
#[derive(Debug, Clone)]
pub struct Globs {
    patterns: Arc<[Pattern]>,
    options: MatchOptions,
}

impl Default for Globs {
    fn default() -> Self {
        Globs {
            patterns: Arc::new([]),
            options: NAMES,
        }
    }
}

impl Globs {
    /// Compiles every pattern as a name glob; the error names the first bad one.
    pub fn compile<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, PatternError> {
        Self::compile_with(patterns, NAMES)
    }

    /// Compiles every pattern as a path glob (`*` within a segment, `**` across segments).
    pub fn compile_paths<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PatternError> {
        Self::compile_with(patterns, PATHS)
    }

    fn compile_with<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
        options: MatchOptions,
    ) -> Result<Self, PatternError> {
        let patterns = patterns
            .into_iter()
            .map(Pattern::new)
            .collect::<Result<Arc<[_]>, _>>()?;
        Ok(Globs { patterns, options })
    }

    /// Whether any glob matches `value` in full.
    pub fn matches(&self, value: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches_with(value, self.options))
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
    /// By kind (paths or names) and patterns.
    compiled: HashMap<(bool, Vec<&'f str>), Globs>,
}

impl<'f> GlobCache<'f> {
    /// The compiled name list, or `None` with each bad glob reported as "bad `what` glob".
    pub fn compile(
        &mut self,
        p: &mut Problems<'_>,
        globs: &'f [Spanned<String>],
        what: &str,
    ) -> Option<Globs> {
        self.compile_kind(p, globs, what, false)
    }

    /// The compiled path list (see [`Globs::compile_paths`]), or `None` with each bad glob
    /// reported.
    pub fn compile_paths(
        &mut self,
        p: &mut Problems<'_>,
        globs: &'f [Spanned<String>],
        what: &str,
    ) -> Option<Globs> {
        self.compile_kind(p, globs, what, true)
    }

    fn compile_kind(
        &mut self,
        p: &mut Problems<'_>,
        globs: &'f [Spanned<String>],
        what: &str,
        paths: bool,
    ) -> Option<Globs> {
        let options = if paths { PATHS } else { NAMES };
        let key = (paths, globs.iter().map(|g| g.value.as_str()).collect());
        if let Some(compiled) = self.compiled.get(&key) {
            return Some(compiled.clone());
        }
        let mut ok = true;
        for g in globs {
            if let Err(e) = Globs::compile_with([g.value.as_str()], options) {
                p.error(g, format!("bad {what} glob `{}`: {}", g.value, e.msg));
                ok = false;
            }
        }
        let compiled = ok
            .then(|| Globs::compile_with(key.1.iter().copied(), options).ok())
            .flatten()?;
        self.compiled.insert(key, compiled.clone());
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
    fn in_paths_one_star_stays_in_its_segment_and_two_cross() {
        let globs = Globs::compile_paths(["/public/*", "/docs/**", "/v1/pi*"]).unwrap();
        assert!(globs.matches("/public/a"));
        assert!(!globs.matches("/public/a/b"));
        assert!(!globs.matches("/public/x/../../private/admin"));
        assert!(globs.matches("/docs/a/b/c"));
        assert!(globs.matches("/v1/pi_1"));
        assert!(!globs.matches("/v1/pi_1/cancel"));
        assert!(
            Globs::compile_paths(["/a**"]).is_err(),
            "** is a whole segment"
        );
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
