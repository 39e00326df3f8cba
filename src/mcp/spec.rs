//! `mcp_servers:` and an agent's `mcp:` grants, as written in policy files.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::providers::spec::{AuthSpec, ProviderKindSpec, ProviderSpec};

/// `mcp_servers.<name>:` — an MCP server agents reach at `/mcp/<name>` (Streamable HTTP), and
/// the credential Warden presents there (agents never hold it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// `http` (the default) or `mock`: Warden's built-in demo MCP server (no `url`, no key).
    #[serde(default)]
    #[schemars(with = "Option<ProviderKindSpec>")]
    pub kind: Option<Spanned<ProviderKindSpec>>,
    /// The server's Streamable HTTP endpoint, e.g. `https://crm.internal/mcp`.
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub api_key_env: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub api_key_file: Option<Spanned<String>>,
    /// How the key is presented: `bearer` (default with a key), `x-api-key` or `none`.
    #[schemars(with = "Option<AuthSpec>")]
    pub auth: Option<Spanned<AuthSpec>>,
    /// Send `X-Agent-Identity` (a short-lived JWT by `server.identity_key_file`) to the server.
    #[schemars(with = "Option<bool>")]
    pub identity_header: Option<Spanned<bool>>,
    /// Headers sent to this server on every request.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, String>")]
    pub headers: IndexMap<Spanned<String>, Spanned<String>>,
    /// PEM file of CA certificates trusted for this server, on top of the platform's roots.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

impl McpServerSpec {
    /// The same endpoint as a provider that serves no model: MCP servers are compiled,
    /// resolved and trusted exactly like providers and services.
    pub fn as_provider(&self) -> ProviderSpec {
        ProviderSpec {
            kind: self.kind.clone(),
            base_url: self.url.clone(),
            api: None,
            models: Vec::new(),
            api_key_env: self.api_key_env.clone(),
            api_key_file: self.api_key_file.clone(),
            auth: self.auth.clone(),
            headers: self.headers.clone(),
            identity_header: self.identity_header.clone(),
            ca_file: self.ca_file.clone(),
        }
    }
}

/// `agents.<id>.mcp.<server>:` — what of one MCP server exists for the agent. Anything not
/// listed does not: it is left out of lists and refused when called.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpGrantSpec {
    /// Tools by name or name glob, each with its rules (`{}`: callable with any arguments).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ToolSpec>")]
    pub tools: IndexMap<Spanned<String>, ToolSpec>,
    /// Resource URI globs (`*` never crosses `/`, `**` does); default none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub resources: Vec<Spanned<String>>,
    /// Prompt name globs; default none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub prompts: Vec<Spanned<String>>,
}

/// `…tools.<name>:` — the rules a call of the tool must meet.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Rules on top-level arguments, by argument name. A constrained argument must be present
    /// and of the rule's JSON type.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, ArgumentSpec>")]
    pub arguments: IndexMap<Spanned<String>, ArgumentSpec>,
    /// Most calls per day (shared by every tool a glob entry matches).
    #[schemars(with = "Option<u32>")]
    pub per_day: Option<Spanned<u32>>,
    /// Most a numeric argument may add up to per day, by argument name.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, f64>")]
    pub sum_per_day: IndexMap<Spanned<String>, Spanned<f64>>,
}

/// One argument's rule. `pattern` and `max_length` make it a string, `min` and `max` a number,
/// `one_of` one of the values listed (of their types).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgumentSpec {
    /// A glob the whole string must match (`*` any characters). A space, comma, semicolon or
    /// control character is admitted only if the pattern has that character too, so
    /// `*@example.com` admits one address, not a list.
    #[schemars(with = "Option<String>")]
    pub pattern: Option<Spanned<String>>,
    /// The values allowed (strings, numbers or booleans).
    #[schemars(with = "Option<Vec<serde_json::Value>>")]
    pub one_of: Option<Spanned<Vec<serde_json::Value>>>,
    #[schemars(with = "Option<f64>")]
    pub min: Option<Spanned<f64>>,
    #[schemars(with = "Option<f64>")]
    pub max: Option<Spanned<f64>>,
    /// Most characters (Unicode scalar values) the string may have.
    #[schemars(with = "Option<u64>")]
    pub max_length: Option<Spanned<u64>>,
}
