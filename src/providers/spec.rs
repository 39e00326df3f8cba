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
    /// The wire format the provider speaks; requests in the other one are translated.
    #[serde(default)]
    #[schemars(with = "Option<ApiSpec>")]
    pub api: Option<Spanned<ApiSpec>>,
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

/// `services.<name>:` — a non-LLM HTTP API agents call through `/svc/<name>/…`: where it is
/// and the credential Warden presents there (agents never hold it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[schemars(with = "String")]
    pub base_url: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub api_key_file: Option<Spanned<String>>,
    #[schemars(with = "Option<AuthSpec>")]
    pub auth: Option<Spanned<AuthSpec>>,
    /// Headers sent to this service on every request.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub headers: IndexMap<Spanned<String>, Spanned<String>>,
    /// PEM file of CA certificates trusted for this service, on top of the platform's roots.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

impl ServiceSpec {
    /// The same endpoint as a provider that serves no model: services are compiled, resolved
    /// and trusted exactly like providers.
    pub fn as_provider(&self) -> ProviderSpec {
        ProviderSpec {
            kind: None,
            base_url: Some(self.base_url.clone()),
            api: None,
            models: Vec::new(),
            api_key_env: self.api_key_env.clone(),
            api_key_file: self.api_key_file.clone(),
            auth: self.auth.clone(),
            headers: self.headers.clone(),
            identity_header: None,
            ca_file: self.ca_file.clone(),
        }
    }
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

/// `api:` of a provider: the wire format its models are called in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApiSpec {
    /// OpenAI Chat Completions (and the rest of OpenAI's API).
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

/// How the provider key is presented upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthSpec {
    Bearer,
    XApiKey,
    None,
}
