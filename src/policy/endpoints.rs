//! Which method and path an agent may call: closed by default.
//!
//! Every agent shares the provider's key, so an endpoint that manages the provider account
//! (files, fine-tuning, batches, assistants, …) would let one agent read or delete another's
//! data. An agent without `endpoints:` may therefore call only [`DEFAULT`]: endpoints that
//! take a `model` and only compute, and the session calls agent SDKs make on the responses
//! and conversations they created (Warden refuses another agent's: `crate::objects`).
//! Anything else must be listed, and `warden check` warns when a listed entry reaches a
//! management endpoint.
//!
//! An entry is `[METHODS ]PATH`: `PATH` is a path glob (`*` within a segment, `**` across
//! segments); `METHODS` is `*` or a comma-separated list
//! (`GET,DELETE /v1/files/*`). Without methods an entry allows the inference method of its
//! path: `GET` for `/v1/models…`, `POST` for everything else.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::Method;
use serde_saphyr::Spanned;

use crate::globs::{is_literal, Globs};
use crate::problem::Problems;

/// The default allowlist: inference endpoints of OpenAI-compatible and Anthropic APIs that
/// carry a JSON `model` and only compute, with their methods; then the calls the OpenAI
/// Agents SDK's sessions make on the agent's own responses and conversations.
pub const DEFAULT: &[&str] = &[
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/responses",
    "POST /v1/embeddings",
    "POST /v1/moderations",
    "POST /v1/images/generations",
    "POST /v1/audio/speech",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "GET /v1/models",
    "GET /v1/models/**",
    "POST /v1/responses/input_tokens",
    "GET,DELETE /v1/responses/*",
    "POST /v1/responses/*/cancel",
    "GET /v1/responses/*/input_items",
    "POST /v1/conversations",
    "GET,POST,DELETE /v1/conversations/*",
    "GET,POST /v1/conversations/*/items",
    "GET,DELETE /v1/conversations/*/items/*",
];

/// Paths that manage the provider account rather than compute: listing one is warned about.
const MANAGEMENT_SAMPLES: &[&str] = &[
    "/v1/files",
    "/v1/files/file-x",
    "/v1/files/file-x/content",
    "/v1/fine_tuning/jobs",
    "/v1/batches",
    "/v1/batches/batch-x",
    "/v1/assistants",
    "/v1/threads/thread-x/runs",
    "/v1/vector_stores",
    "/v1/vector_stores/vs-x",
    "/v1/uploads",
    "/v1/organization/users",
    "/v1/projects",
    "/v1/evals",
    "/v1/containers",
    "/v1/messages/batches",
];

/// An agent's compiled endpoint allowlist.
#[derive(Debug, Clone)]
pub struct Endpoints {
    rules: Arc<[Rule]>,
}

#[derive(Debug)]
struct Rule {
    /// `None`: any method.
    methods: Option<Vec<Method>>,
    path: PathMatch,
}

#[derive(Debug)]
enum PathMatch {
    /// A path without wildcards: compared as a string (the default list, mostly).
    Exact(Box<str>),
    Glob(Globs),
}

impl Endpoints {
    /// [`DEFAULT`], compiled once per process.
    pub fn default_list() -> Endpoints {
        static COMPILED: OnceLock<Endpoints> = OnceLock::new();
        COMPILED
            .get_or_init(|| {
                let rules = DEFAULT.iter().filter_map(|e| parse(e).ok()).collect();
                Endpoints { rules }
            })
            .clone()
    }

    /// Whether `method` on `path` is allowed.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.methods.as_ref().is_none_or(|m| m.contains(method))
                && match &rule.path {
                    PathMatch::Exact(exact) => **exact == *path,
                    PathMatch::Glob(glob) => glob.matches(path),
                }
        })
    }
}

/// Compiles `endpoints:` lists, once per distinct list.
#[derive(Default)]
pub struct EndpointCache<'f> {
    compiled: HashMap<Vec<&'f str>, Endpoints>,
}

impl<'f> EndpointCache<'f> {
    /// The compiled list of agent `agent`, or `None` with each bad entry reported; warns about
    /// entries that reach management endpoints.
    pub fn compile(
        &mut self,
        p: &mut Problems<'_>,
        agent: &str,
        entries: &'f [Spanned<String>],
    ) -> Option<Endpoints> {
        let key: Vec<&'f str> = entries.iter().map(|e| e.value.as_str()).collect();
        if let Some(compiled) = self.compiled.get(&key) {
            warn_management(p, agent, entries);
            return Some(compiled.clone());
        }
        let mut rules = Vec::with_capacity(entries.len());
        for entry in entries {
            match parse(&entry.value) {
                Ok(rule) => rules.push(rule),
                Err(message) => p.error(entry, message),
            }
        }
        if rules.len() != entries.len() {
            return None;
        }
        warn_management(p, agent, entries);
        let compiled = Endpoints {
            rules: rules.into(),
        };
        self.compiled.insert(key, compiled.clone());
        Some(compiled)
    }
}

fn warn_management(p: &mut Problems<'_>, agent: &str, entries: &[Spanned<String>]) {
    for entry in entries {
        let Ok(rule) = parse(&entry.value) else {
            continue;
        };
        let reached = MANAGEMENT_SAMPLES.iter().find(|sample| match &rule.path {
            PathMatch::Exact(exact) => **exact == ***sample,
            PathMatch::Glob(glob) => glob.matches(sample),
        });
        if let Some(sample) = reached {
            p.warning(
                entry,
                format!(
                    "agent `{agent}` may call `{}`, which reaches a management endpoint ({sample}): Warden refuses objects other agents created, but lists and account settings there are shared by every agent of the provider key",
                    entry.value
                ),
            );
        }
    }
}

/// One entry: `[METHODS ]PATH`.
fn parse(entry: &str) -> Result<Rule, String> {
    let entry = entry.trim();
    let (methods, path) = match entry.split_once(char::is_whitespace) {
        Some((methods, path)) if !entry.starts_with('/') => (Some(methods), path.trim()),
        _ => (None, entry),
    };
    if !path.starts_with('/') {
        return Err(format!("endpoint `{entry}` must start with /"));
    }
    let glob = Globs::compile_paths([path])
        .map_err(|e| format!("bad endpoint glob `{path}`: {}", e.msg))?;
    let methods = match methods {
        Some("*") => None,
        Some(list) => Some(
            list.split(',')
                .map(|m| {
                    let m = m.trim();
                    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(format!(
                            "`{m}` in endpoint `{entry}` is not a method: write them in capitals, like `GET,DELETE /v1/files/*`, or `*` for any"
                        ));
                    }
                    Method::from_bytes(m.as_bytes()).map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None if path.starts_with("/v1/models") => Some(vec![Method::GET]),
        None => Some(vec![Method::POST]),
    };
    let path = if is_literal(path) {
        PathMatch::Exact(path.into())
    } else {
        PathMatch::Glob(glob)
    };
    Ok(Rule { methods, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Endpoints {
        Endpoints {
            rules: entries.iter().map(|e| parse(e).unwrap()).collect(),
        }
    }

    #[test]
    fn the_default_allows_inference_and_sessions_and_nothing_else() {
        let e = Endpoints::default_list();
        assert_eq!(e.rules.len(), DEFAULT.len());
        assert!(e.allows(&Method::GET, "/v1/responses/resp_1"));
        assert!(e.allows(&Method::GET, "/v1/responses/resp_1/input_items"));
        assert!(e.allows(&Method::DELETE, "/v1/conversations/conv_1/items/msg_1"));
        assert!(e.allows(&Method::POST, "/v1/conversations"));
        assert!(!e.allows(&Method::GET, "/v1/conversations"));
        assert!(!e.allows(&Method::POST, "/v1/responses/resp_1"));
        assert!(e.allows(&Method::POST, "/v1/chat/completions"));
        assert!(e.allows(&Method::POST, "/v1/messages"));
        assert!(e.allows(&Method::GET, "/v1/models/gpt-4o"));
        assert!(e.allows(&Method::GET, "/v1/models/meta-llama/llama-3"));
        assert!(!e.allows(&Method::GET, "/v1/chat/completions"));
        assert!(!e.allows(&Method::DELETE, "/v1/chat/completions"));
        assert!(!e.allows(&Method::POST, "/v1/files"));
        assert!(!e.allows(&Method::DELETE, "/v1/files/file-1"));
        assert!(!e.allows(&Method::POST, "/v1/fine_tuning/jobs"));
        assert!(!e.allows(&Method::POST, "/v1/models"));
    }

    #[test]
    fn listed_entries_take_methods_or_infer_them() {
        let e = list(&["/v1/embeddings", "GET,DELETE /v1/files/*", "* /v1/batches"]);
        assert!(e.allows(&Method::POST, "/v1/embeddings"));
        assert!(!e.allows(&Method::GET, "/v1/embeddings"));
        assert!(e.allows(&Method::DELETE, "/v1/files/file-1"));
        assert!(!e.allows(&Method::POST, "/v1/files/file-1"));
        assert!(!e.allows(&Method::DELETE, "/v1/files/file-1/content"));
        assert!(e.allows(&Method::PATCH, "/v1/batches"));
        assert!(list(&["/v1/models"]).allows(&Method::GET, "/v1/models"));
    }

    #[test]
    fn bad_entries_are_errors() {
        assert!(parse("v1/chat").is_err());
        assert!(parse("get /v1/x").is_err());
        assert!(parse("POST v1/x").is_err());
        assert!(parse("/v1/[x").is_err());
    }
}
