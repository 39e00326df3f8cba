//! The policy file format: exactly what users write, nothing compiled.
//!
//! Every struct denies unknown fields, so a typo (`request_per_minute`) is an error instead of a
//! silently missing limit. Values whose position matters for a later semantic error are wrapped
//! in [`Spanned`] so `warden check` can name the line and column.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// One policy file (or one file of a config directory) as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub server: Option<Spanned<ServerSpec>>,
    /// Insertion order matters: the first provider whose globs match a model wins.
    #[serde(default)]
    pub providers: IndexMap<Spanned<String>, ProviderSpec>,
    #[serde(default)]
    pub agents: IndexMap<Spanned<String>, AgentSpec>,
}

/// `server:` — listening addresses and request limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub listen: Option<Spanned<String>>,
    pub admin: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Seconds to wait for a TCP/TLS connection to a provider.
    pub connect_timeout_secs: Option<Spanned<f64>>,
    /// Seconds to wait between two reads from a provider (not the total: streams can run long).
    pub read_timeout_secs: Option<Spanned<f64>>,
}

/// `providers.<name>:` — where models are served and how Warden authenticates there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(default)]
    pub kind: Option<Spanned<ProviderKindSpec>>,
    pub base_url: Option<Spanned<String>>,
    pub models: Vec<Spanned<String>>,
    pub api_key_env: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<String>>,
    pub auth: Option<Spanned<AuthSpec>>,
}

/// `kind:` of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKindSpec {
    /// A real HTTP(S) provider reached at `base_url` (the default).
    Http,
    /// Warden's built-in mock provider (no network, no key).
    Mock,
}

/// How the provider key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthSpec {
    Bearer,
    XApiKey,
    None,
}

/// `agents.<id>:` — one agent's identity and what it may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub owner: Option<String>,
    #[serde(default)]
    pub keys: Vec<Spanned<KeySpec>>,
    pub models: Vec<Spanned<String>>,
    pub endpoints: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub status: Option<Spanned<StatusSpec>>,
}

/// One API key, stored only as the SHA-256 of the whole secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub id: Spanned<String>,
    pub sha256: Spanned<String>,
    pub expires_at: Option<Spanned<String>>,
}

/// `limits:` — every limit is optional; absent means unlimited.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub requests_per_minute: Option<Spanned<u32>>,
    pub max_concurrent: Option<Spanned<u32>>,
}

/// `status:` of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusSpec {
    Active,
    Suspended,
}
