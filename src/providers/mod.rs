//! Providers: where models are served, how Warden reaches them and what key it presents.
//!
//! A provider section compiles ([`compile`]) into a [`Provider`]: the globs of the models it
//! serves, its [`Upstream`] (address kept fresh by [`resolve`], trust list from [`trust`]) and
//! the credential Warden swaps in for the agent's.

pub mod compile;
pub mod resolve;
pub mod spec;
pub mod trust;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pingora::protocols::tls::CaType;

use crate::globs::Globs;
use resolve::ResolvedAddr;

/// A provider ready to receive requests.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub models: Globs,
    pub upstream: Upstream,
    pub auth: UpstreamAuth,
    /// `headers:` from policy, set on every request after the agent's copies are removed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Send `X-Agent-Identity` to this provider.
    pub identity_header: bool,
    /// What it is: an LLM provider, a service or an MCP server.
    pub serves: Serves,
    /// The wire format it takes model calls in.
    pub api: WireApi,
}

/// The wire format a provider takes model calls in: a request in the other one is translated
/// (`crate::translate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireApi {
    /// OpenAI's API: an Anthropic Messages request is translated to Chat Completions.
    OpenAi,
    /// Anthropic's Messages API: a Chat Completions request is translated to Messages.
    Anthropic,
    /// Each request in the format it was sent, untranslated: the built-in mock (it speaks
    /// both), and a provider without `api:` that authenticates with `x-api-key` — Anthropic,
    /// which serves an OpenAI-compatible endpoint beside Messages, as policies written before
    /// `api:` existed meant it.
    AsSent,
}

/// What a [`Provider`] entry serves: the three kinds of upstream share how they are reached,
/// trusted and authenticated, and differ in how requests address them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Models (`providers:`), routed by the model a request names.
    Models,
    /// A non-LLM API (`services:`) under `/svc/<name>/`.
    Service,
    /// An MCP server (`mcp_servers:`) at `/mcp/<name>`.
    Mcp,
}

impl Serves {
    /// What policy files call it, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Serves::Models => "provider",
            Serves::Service => "service",
            Serves::Mcp => "MCP server",
        }
    }

    /// The policy section it is defined in.
    pub fn section(self) -> &'static str {
        match self {
            Serves::Models => "providers",
            Serves::Service => "services",
            Serves::Mcp => "mcp_servers",
        }
    }

    /// The field of its section that gives its URL.
    pub fn url_field(self) -> &'static str {
        match self {
            Serves::Models | Serves::Service => "base_url",
            Serves::Mcp => "url",
        }
    }
}

/// Where a provider is reached.
#[derive(Debug)]
pub enum Upstream {
    /// A real HTTP(S) endpoint.
    Http(HttpUpstream),
    /// Warden's built-in mock provider (served in-process on a private Unix socket).
    Mock,
}

/// A real provider endpoint, resolved off the hot path.
#[derive(Debug)]
pub struct HttpUpstream {
    /// Kept fresh by the background resolver; unresolved (requests get 502) until a lookup
    /// succeeds.
    pub addr: Arc<ResolvedAddr>,
    pub tls: bool,
    /// Host name, for SNI and certificate verification.
    pub host: String,
    pub port: u16,
    /// `ca_file`'s certificates plus the platform's roots; `None`: the platform's roots.
    pub ca: Option<Arc<CaType>>,
    /// `Host` header value (with the port when it is not the scheme's default).
    pub authority: HeaderValue,
    /// Path prefix of `base_url` without a trailing slash (e.g. `/v1`).
    pub base_path: String,
}

/// The credential Warden presents to a provider in place of the agent's.
#[derive(Debug)]
pub enum UpstreamAuth {
    None,
    /// `Authorization: Bearer <key>` (OpenAI and compatible).
    Bearer(HeaderValue),
    /// `x-api-key: <key>` (Anthropic).
    XApiKey(HeaderValue),
    /// A key is required but was not available at load time; the text says where it was
    /// expected (never the key). Requests to this provider get 502.
    Missing(String),
}

impl Provider {
    /// The path prefix of its `base_url` (`""` for the mock).
    pub fn base_path(&self) -> &str {
        match &self.upstream {
            Upstream::Http(up) => &up.base_path,
            Upstream::Mock => "",
        }
    }

    /// Whether it is served at `host:port` (a CONNECT target).
    pub fn is_at(&self, host: &str, port: u16) -> bool {
        matches!(&self.upstream, Upstream::Http(up) if up.host.eq_ignore_ascii_case(host) && up.port == port)
    }

    /// Why this provider cannot take a request now (no key, host not resolved), in words
    /// without secrets; `None` when it can.
    pub fn unusable(&self) -> Option<String> {
        if let UpstreamAuth::Missing(origin) = &self.auth {
            return Some(format!(
                "{} `{}` has no API key ({origin})",
                self.serves.noun(),
                self.name
            ));
        }
        if let Upstream::Http(up) = &self.upstream {
            if up.addr.get().is_none() {
                return Some(format!(
                    "{} `{}` host `{}` is not resolved",
                    self.serves.noun(),
                    self.name,
                    up.host
                ));
            }
        }
        None
    }
}

/// The first of `providers` whose globs match `model`: policy order decides.
pub fn route<'p>(providers: &'p [Provider], model: &str) -> Option<(usize, &'p Provider)> {
    providers
        .iter()
        .enumerate()
        .find(|(_, p)| p.models.matches(model))
}
