//! The policy file format: exactly what users write, nothing compiled, and its parsing.
//!
//! Each section's type belongs to the domain that compiles it (`server` to [`super::server`],
//! `providers` to `providers`, `agents` and `revocations` to `policy` with their keys from
//! `identity` and limits from `limits`, `audit` to `audit`); this file only puts them together.
//!
//! Every struct denies unknown fields, so a typo (`request_per_minute`) is an error instead of a
//! silently missing limit. Values whose position matters for a later semantic error are wrapped
//! in [`Spanned`] so `warden check` can name the line and column.

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::server::ServerSpec;
use crate::audit::spec::AuditSpec;
use crate::identity::spec::IssuerSpec;
use crate::limits::pricing::PriceSpec;
use crate::limits::spec::TeamSpec;
use crate::policy::spec::{AgentSpec, RevocationsSpec};
use crate::problem::Problem;
use crate::providers::spec::ProviderSpec;
use schemars::JsonSchema;

/// One policy file (or one file of a config directory) as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The policy format's version: 1.
    #[schemars(with = "u32", range(min = 1, max = 1))]
    pub version: Spanned<u32>,
    #[serde(default)]
    #[schemars(with = "Option<ServerSpec>")]
    pub server: Option<Spanned<ServerSpec>>,
    /// Insertion order matters: the first provider whose globs match a model wins.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ProviderSpec>")]
    pub providers: IndexMap<Spanned<String>, ProviderSpec>,
    #[serde(default)]
    #[schemars(with = "IndexMap<String, AgentSpec>")]
    pub agents: IndexMap<Spanned<String>, AgentSpec>,
    /// May appear in several files (e.g. a `revocations.yaml` of its own); the lists are merged.
    #[serde(default)]
    pub revocations: Option<RevocationsSpec>,
    /// USD per million tokens by model glob, for spend budgets and `cost_usd`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, PriceSpec>")]
    pub pricing: IndexMap<Spanned<String>, PriceSpec>,
    /// The IANA time zone budget days are counted in (default UTC); one file may set it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// Budgets shared by the agents of one `owner`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, TeamSpec>")]
    pub teams: IndexMap<Spanned<String>, TeamSpec>,
    /// Trusted JWT issuers, by the name their tokens' `iss` carries.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, IssuerSpec>")]
    pub issuers: IndexMap<Spanned<String>, IssuerSpec>,
    /// Non-LLM HTTP APIs agents call through `/svc/<name>/…` (names shared with `providers`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, crate::providers::spec::ServiceSpec>")]
    pub services: IndexMap<Spanned<String>, crate::providers::spec::ServiceSpec>,
    /// MCP servers agents reach at `/mcp/<name>` (names shared with `providers`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, crate::mcp::spec::McpServerSpec>")]
    pub mcp_servers: IndexMap<Spanned<String>, crate::mcp::spec::McpServerSpec>,
    /// How far agents may delegate by token exchange (`POST /v1/token`); one file may define it.
    #[serde(default)]
    #[schemars(with = "Option<crate::identity::spec::DelegationSpec>")]
    pub delegation: Option<Spanned<crate::identity::spec::DelegationSpec>>,
    /// Limits and revocations shared by every Warden through Redis; one file may define it.
    #[serde(default)]
    #[schemars(with = "Option<crate::fleet::FleetSpec>")]
    pub fleet: Option<Spanned<crate::fleet::FleetSpec>>,
    /// Where audit events go; one file of a directory may define it.
    #[serde(default)]
    #[schemars(with = "Option<AuditSpec>")]
    pub audit: Option<Spanned<AuditSpec>>,
    /// OpenTelemetry traces of every request; one file of a directory may define it.
    #[serde(default)]
    #[schemars(with = "Option<crate::telemetry::TracingSpec>")]
    pub tracing: Option<Spanned<crate::telemetry::TracingSpec>>,
}

/// Parses one policy file (the slow step: about 14 MB/s; a reload reuses the result for files
/// whose text did not change).
pub fn parse(path: &Path, text: &str) -> Result<PolicyFile, Problem> {
    serde_saphyr::from_str_with_options::<PolicyFile>(text, yaml_options())
        .map_err(|e| parse_problem(path, &e))
}

/// serde-saphyr's default budget (250 000 nodes) protects against hostile YAML but refuses a
/// policy of about 10 000 agents. Policy files come from the operator's git, so the node and
/// event caps are raised to fit ~200 000 agents; the alias, anchor and depth caps that stop
/// "billion laughs" documents stay at their defaults.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 5_000_000,
            max_events: 10_000_000,
        },
    }
}

fn parse_problem(path: &Path, e: &serde_saphyr::Error) -> Problem {
    let message = first_line(&e.to_string());
    match e.location() {
        Some(at) => Problem::error(path, at, message),
        None => Problem::file_error(path, message),
    }
}

/// serde-saphyr renders a source snippet after the message; `check` wants one line.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // The position is reported in front already; drop the parser's own "line N column M: ".
    match line.split_once(": ") {
        Some((position, rest))
            if position.starts_with("line ") && position.contains(" column ") =>
        {
            rest.to_string()
        }
        _ => line.to_string(),
    }
}
