//! `providers:` as written in policy files.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;

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
    /// Headers sent to this provider on every request (`OpenAI-Organization`,
    /// `OpenAI-Project`, …): the operator chooses the account, never the agent.
    #[serde(default)]
    pub headers: IndexMap<Spanned<String>, Spanned<String>>,
    /// Send `X-Agent-Identity` (a short-lived JWT by Warden's `server.identity_key_file`) to
    /// this provider.
    pub identity_header: Option<Spanned<bool>>,
    /// PEM file of CA certificates trusted for this provider, on top of the platform's roots
    /// (a private gateway's CA).
    pub ca_file: Option<Spanned<String>>,
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
