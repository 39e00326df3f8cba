//! Delegation (RFC 8693 token exchange): an agent hands a sub-agent a token that can do no more
//! than the agent itself — a subset of its scope, an expiry no later than its own, a chain no
//! deeper than `delegation.max_depth` — signed with Warden's identity key.
//!
//! A delegated token names the parent agent (`sub`), the actor chain (`act`, nested: the
//! newest actor outermost, RFC 8693 §4.1), its `scope` and its lineage (every ancestor token's
//! `jti`, and the key the chain started from), so that revoking anything up the chain refuses
//! it. It is verified like any issuer's JWT, by the reserved issuer [`ISSUER`].

use serde::{Deserialize, Serialize};

use crate::globs::{is_literal, Globs};

/// `iss` and `aud` of delegated tokens; no `issuers:` entry may take this name.
pub const ISSUER: &str = "warden";
/// `delegation.max_depth` when unset: a chain of three actors.
pub const DEFAULT_MAX_DEPTH: usize = 3;
/// `delegation.max_ttl` when unset, in seconds.
pub const DEFAULT_MAX_TTL_SECS: i64 = 3600;

/// `delegation:` compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub max_depth: usize,
    pub max_ttl_secs: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_depth: DEFAULT_MAX_DEPTH,
            max_ttl_secs: DEFAULT_MAX_TTL_SECS,
        }
    }
}

/// What a credential may use: model globs, MCP tools (server, tool glob), services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub models: Vec<String>,
    pub mcp: Vec<(String, String)>,
    pub services: Vec<String>,
}

impl Scope {
    /// Parses a space-separated `scope` (`models:<glob>`, `mcp:<server>/<tool>`,
    /// `services:<name>`); the error names the item it cannot read.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let mut scope = Scope::default();
        for item in text.split(' ').filter(|i| !i.is_empty()) {
            let bad = || {
                format!(
                    "`{}` is not `models:<glob>`, `mcp:<server>/<tool>` or `services:<name>`",
                    cut(item)
                )
            };
            let (kind, value) = item.split_once(':').ok_or_else(bad)?;
            if value.is_empty() || glob::Pattern::new(value).is_err() {
                return Err(bad());
            }
            match kind {
                "models" => scope.models.push(value.to_owned()),
                "services" if is_literal(value) => scope.services.push(value.to_owned()),
                "mcp" => {
                    let (server, tool) = value.split_once('/').ok_or_else(bad)?;
                    if server.is_empty() || tool.is_empty() || !is_literal(server) {
                        return Err(bad());
                    }
                    scope.mcp.push((server.to_owned(), tool.to_owned()));
                }
                _ => return Err(bad()),
            }
        }
        Ok(scope)
    }

    /// The scope as a `scope` claim (the form [`Scope::parse`] reads).
    pub fn render(&self) -> String {
        let models = self.models.iter().map(|m| format!("models:{m}"));
        let mcp = self.mcp.iter().map(|(s, t)| format!("mcp:{s}/{t}"));
        let services = self.services.iter().map(|s| format!("services:{s}"));
        models
            .chain(mcp)
            .chain(services)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The first item of `self` that `parent` does not cover, in words; `None` when every
    /// item is within it.
    pub fn wider_than(&self, parent: &Scope) -> Option<String> {
        if let Some(m) = self.models.iter().find(|m| !covers(&parent.models, m)) {
            return Some(format!("model `{}`", cut(m)));
        }
        for (server, tool) in &self.mcp {
            let tools: Vec<String> = (parent.mcp.iter())
                .filter(|(s, _)| s == server)
                .map(|(_, t)| t.clone())
                .collect();
            if !covers(&tools, tool) {
                return Some(format!("MCP tool `{}/{}`", cut(server), cut(tool)));
            }
        }
        (self.services.iter())
            .find(|s| !parent.services.contains(s))
            .map(|s| format!("service `{}`", cut(s)))
    }

    /// The tool globs of MCP server `server` (`None`: the scope has none of its tools).
    pub fn mcp_tools(&self, server: &str) -> Option<Globs> {
        let tools: Vec<&str> = (self.mcp.iter())
            .filter(|(s, _)| s == server)
            .map(|(_, t)| t.as_str())
            .collect();
        (!tools.is_empty())
            .then(|| Globs::compile(tools).ok())
            .flatten()
    }
}

/// Whether the globs `parent` admit everything glob `wanted` admits. Decided conservatively:
/// `wanted` is one of `parent`; or it has no wildcard and a parent glob matches it; or it uses
/// `*` alone, and a parent glob that uses `*` alone matches it read literally (each of its
/// stars then lies inside a star of the parent's). Anything else is not covered.
pub fn covers(parent: &[String], wanted: &str) -> bool {
    let stars_only = |g: &str| !g.contains(['?', '[', ']']);
    parent.iter().any(|p| {
        p == wanted
            || match glob::Pattern::new(p) {
                Ok(pattern) if is_literal(wanted) => pattern.matches(wanted),
                Ok(pattern) => stars_only(p) && stars_only(wanted) && pattern.matches(wanted),
                Err(_) => false,
            }
    })
}

/// A verified delegated token's facts.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The actors, from the first delegate to the current one.
    pub actors: Vec<Box<str>>,
    pub scope: Scope,
    /// The scope's models, compiled (the credential narrows the agent's allowlist to them).
    pub models: Globs,
    /// The `jti`s of every token up the chain (a JWT the chain started from included).
    pub ancestors: Vec<Box<str>>,
    /// The API key or public key id the chain started from.
    pub root_key: Option<Box<str>>,
}

impl Delegation {
    /// Whether the scope lets the credential call service `name`.
    pub fn allows_service(&self, name: &str) -> bool {
        self.scope.services.iter().any(|s| s == name)
    }
}

/// The actor chain as a nested `act` claim: `{sub: current, act: {sub: previous, …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// The chain, from the first delegate to the current actor.
    pub fn chain(&self) -> Vec<Box<str>> {
        let mut chain = Vec::new();
        let mut at = Some(self);
        while let Some(actor) = at {
            chain.push(actor.sub.as_str().into());
            at = actor.act.as_deref();
        }
        chain.reverse();
        chain
    }

    /// The nested claim for `chain` (first delegate first); `None` for an empty chain.
    pub fn nest(chain: &[Box<str>]) -> Option<Actor> {
        chain.iter().fold(None, |inner, sub| {
            Some(Actor {
                sub: sub.to_string(),
                act: inner.map(Box::new),
            })
        })
    }
}

/// A delegated token's lineage claim (`warden`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    #[serde(default)]
    pub ancestors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The claims of a delegated token, as minted.
#[derive(Debug, Serialize)]
pub struct DelegatedClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub act: Actor,
    pub scope: String,
    pub warden: Lineage,
}

/// Signs delegated `claims` with Warden's identity key.
pub fn sign(
    key: &ed25519_dalek::SigningKey,
    claims: &DelegatedClaims<'_>,
) -> Result<String, String> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(super::vouch::thumbprint(key));
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    jsonwebtoken::encode(&header, claims, &encoding).map_err(|e| e.to_string())
}

/// `text` cut for a message (a hostile scope item cannot bloat an answer).
fn cut(text: &str) -> &str {
    let mut end = text.len().min(100);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_scope_is_within_its_parent_only_when_every_item_is_covered() {
        let parent =
            Scope::parse("models:gpt-* models:claude-sonnet-4 mcp:crm/lookup_* services:stripe")
                .unwrap();
        let narrower = Scope::parse(
            "models:gpt-4o* models:claude-sonnet-4 mcp:crm/lookup_customer services:stripe",
        )
        .unwrap();
        assert_eq!(narrower.wider_than(&parent), None);
        for wider in [
            "models:*",
            "models:claude-*",
            "mcp:crm/delete_customer",
            "mcp:billing/lookup_x",
            "services:mailgun",
            "models:gpt-?",
        ] {
            assert!(
                Scope::parse(wider).unwrap().wider_than(&parent).is_some(),
                "{wider}"
            );
        }
        assert!(covers(&strings(&["a*c"]), "a*c"));
        assert!(!covers(&strings(&["a*"]), "*"));
        assert!(
            !covers(&strings(&["gpt-?"]), "gpt-*"),
            "`?` does not cover `*`"
        );
        assert!(covers(&strings(&["*x*"]), "*x"));
    }

    #[test]
    fn scopes_parse_and_render_back() {
        let text = "models:gpt-4o mcp:crm/lookup_customer services:stripe";
        assert_eq!(Scope::parse(text).unwrap().render(), text);
        for bad in [
            "gpt-4o",
            "models:",
            "mcp:crm",
            "mcp:/x",
            "mcp:c*/x",
            "services:s*",
            "tools:x",
            "models:[a",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_actor_chain_nests_newest_outermost() {
        let chain: Vec<Box<str>> = vec!["planner".into(), "researcher".into(), "summarizer".into()];
        let act = Actor::nest(&chain).unwrap();
        assert_eq!(act.sub, "summarizer");
        assert_eq!(act.act.as_ref().unwrap().sub, "researcher");
        assert_eq!(act.chain(), chain);
    }
}
