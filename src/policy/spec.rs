//! `agents:` and `revocations:` as written in policy files.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::identity::spec::{KeySpec, PublicKeySpec};
use crate::limits::spec::LimitsSpec;
use indexmap::IndexMap;
use schemars::JsonSchema;

/// `agents.<id>:` — one agent's identity and what it may do.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub owner: Option<String>,
    #[serde(default)]
    #[schemars(with = "Vec<KeySpec>")]
    pub keys: Vec<Spanned<KeySpec>>,
    /// Ed25519 keys the agent signs requests with (HTTP Message Signatures).
    #[serde(default)]
    #[schemars(with = "Vec<PublicKeySpec>")]
    pub public_keys: Vec<Spanned<PublicKeySpec>>,
    /// Model globs the agent may use (absent or empty: none; such an agent may still verify
    /// actions and call services).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub models: Vec<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub endpoints: Option<Vec<Spanned<String>>>,
    /// Non-LLM APIs (`services:`) the agent may call through `/svc/<name>/…`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, super::services::ServiceGrantSpec>")]
    pub services: IndexMap<Spanned<String>, super::services::ServiceGrantSpec>,
    /// MCP servers (`mcp_servers:`) the agent may reach at `/mcp/<server>`, and what of each
    /// exists for it (tools with their rules, resources, prompts).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, crate::mcp::spec::McpGrantSpec>")]
    pub mcp: IndexMap<Spanned<String>, crate::mcp::spec::McpGrantSpec>,
    /// What `POST /v1/verify` may confirm for this agent (none: no action is allowed).
    #[serde(default)]
    pub actions: Option<super::actions::ActionsSpec>,
    /// Weekly windows the agent may act in; outside them every request is refused (403
    /// `outside_schedule`).
    #[serde(default)]
    #[schemars(with = "Option<super::schedule::ScheduleSpec>")]
    pub schedule: Option<Spanned<super::schedule::ScheduleSpec>>,
    /// `host:port` globs of the CONNECT tunnels the agent may open in HTTPS_PROXY mode, beyond
    /// the intercepted LLM hosts (default: none).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub destinations: Vec<Spanned<String>>,
    /// Globs of provider object ids the agent may name though no agent created them through
    /// Warden (a vector store or file the platform team made): every other object must be the
    /// agent's own (403 `object_not_owned`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub shared_objects: Vec<Spanned<String>>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    #[schemars(with = "Option<StatusSpec>")]
    pub status: Option<Spanned<StatusSpec>>,
    /// With `status: suspended`: when the agent becomes active again by itself (RFC 3339).
    #[schemars(with = "Option<String>")]
    pub suspended_until: Option<Spanned<String>>,
}

/// `status:` of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSpec {
    Active,
    Suspended,
}

/// `revocations:` — what must stop working now, whatever the rest of the policy says.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationsSpec {
    /// Agent ids: every credential of the agent is refused.
    #[serde(default)]
    #[schemars(with = "Vec<RevokedSpec>")]
    pub agents: Vec<Spanned<RevokedSpec>>,
    /// API key ids or public key ids: that one credential is refused.
    #[serde(default)]
    #[schemars(with = "Vec<RevokedSpec>")]
    pub keys: Vec<Spanned<RevokedSpec>>,
    /// Token ids (JWT `jti`).
    #[serde(default)]
    #[schemars(with = "Vec<RevokedSpec>")]
    pub tokens: Vec<Spanned<RevokedSpec>>,
    /// Teams (agents' `owner`): every agent of the team is refused (403 `principal_revoked`).
    #[serde(default)]
    #[schemars(with = "Vec<RevokedSpec>")]
    pub teams: Vec<Spanned<RevokedSpec>>,
}

/// One revoked id: a bare id, or `{id, reason}`.
#[derive(Debug, JsonSchema)]
#[schemars(untagged)]
pub enum RevokedSpec {
    Id(String),
    Entry(RevokedEntrySpec),
}

/// `{id, reason}` form of a revocation.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntrySpec {
    pub id: String,
    pub reason: Option<String>,
}

impl RevokedSpec {
    /// The revoked id.
    pub fn id(&self) -> &str {
        match self {
            RevokedSpec::Id(id) => id,
            RevokedSpec::Entry(entry) => &entry.id,
        }
    }

    /// Why it was revoked, if the policy says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            RevokedSpec::Id(_) => None,
            RevokedSpec::Entry(entry) => entry.reason.as_deref(),
        }
    }
}

/// Hand-written rather than `#[serde(untagged)]`, whose only error is "did not match any
/// variant": a mapping with a typo should say which field is unknown.
impl<'de> Deserialize<'de> for RevokedSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RevokedSpec;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id, or a mapping {id, reason}")
            }

            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<RevokedSpec, E> {
                Ok(RevokedSpec::Id(id.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RevokedSpec, A::Error> {
                let entry = RevokedEntrySpec::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RevokedSpec::Entry(entry))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}
