//! `providers:` as written in policy files.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `providers.<name>:` — where models are served and how Warden authenticates there.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(default)]
    #[schemars(with = "Option<ProviderKindSpec>")]
    pub kind: Option<Spanned<ProviderKindSpec>>,
    #[schemars(with = "Option<String>")]
    pub base_url: Option<Spanned<String>>,
    #[schemars(with = "Vec<String>")]
    pub models: Vec<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub api_key_file: Option<Spanned<String>>,
    #[schemars(with = "Option<AuthSpec>")]
    pub auth: Option<Spanned<AuthSpec>>,
    /// Headers sent to this provider on every request (`OpenAI-Organization`,
    /// `OpenAI-Project`, …): the operator chooses the account, never the agent.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub headers: IndexMap<Spanned<String>, Spanned<String>>,
    /// Send `X-Agent-Identity` (a short-lived JWT by Warden's `server.identity_key_file`) to
    /// this provider.
    #[schemars(with = "Option<bool>")]
    pub identity_header: Option<Spanned<bool>>,
    /// PEM file of CA certificates trusted for this provider, on top of the platform's roots
    /// (a private gateway's CA).
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

/// `kind:` of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKindSpec {
    /// A real HTTP(S) provider reached at `base_url` (the default).
    Http,
    /// Warden's built-in mock provider (no network, no key).
    Mock,
}

/// How the provider key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthSpec {
    Bearer,
    XApiKey,
    None,
}
