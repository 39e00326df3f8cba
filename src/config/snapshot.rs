//! The compiled policy that requests read: immutable, indexed, replaced whole on reload.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use jiff::Timestamp;
use pingora::protocols::tls::CaType;

use super::resolve::ResolvedAddr;
use crate::audit::AuditSettings;
use crate::identity::api_key::KeyIndex;
use crate::limits::AgentLimits;
use crate::policy::globs::Globs;
use crate::policy::revocations::Revocations;

/// Everything one request needs to decide, loaded once at its start.
#[derive(Debug)]
pub struct Snapshot {
    /// SHA-256 of the policy sources; reported in metrics, logs and (later) audit events.
    pub version: String,
    pub server: ServerSettings,
    /// In policy order: the first provider whose globs match a model serves it.
    pub providers: Vec<Provider>,
    pub agents: Vec<Agent>,
    pub keys: KeyIndex,
    pub revocations: Revocations,
    /// Files the policy points at (provider key files) and what they held when compiled: a
    /// change to one of them is a policy change too.
    pub referenced_files: Vec<ReferencedFile>,
    /// `audit:`; read once at start-up (the shipper is not rebuilt on reload).
    pub audit: Option<AuditSettings>,
}

/// A file read while compiling, other than the policy sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencedFile {
    pub path: PathBuf,
    /// SHA-256 of the contents; `None` when the file could not be read.
    pub digest: Option<[u8; 32]>,
}

/// `server:` after defaults are applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub max_body_bytes: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Period between two background lookups of every provider host.
    pub resolve_interval: Duration,
}

/// A provider ready to receive requests.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub models: Globs,
    pub upstream: Upstream,
    pub auth: UpstreamAuth,
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

/// An agent's compiled policy.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    /// `X-Agent-ID` value, built once.
    pub id_header: HeaderValue,
    pub models: Globs,
    /// `None`: every endpoint.
    pub endpoints: Option<Globs>,
    pub status: AgentStatus,
    pub limits: AgentLimits,
}

/// Whether an agent may act at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Active,
    /// Refused until `until` (forever when `None`), then active again without a reload.
    Suspended {
        until: Option<Timestamp>,
    },
    /// Listed under `revocations.agents`: refused whatever `status` says.
    Revoked,
}

impl Snapshot {
    /// The first provider whose globs match `model`.
    pub fn route(&self, model: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.models.matches(model))
    }

    /// Models an agent may use that some provider serves, for `GET /v1/models`.
    ///
    /// Wildcards cannot be listed, so the candidates are the exact names in the agent's
    /// allowlist and in the providers' model lists; each is listed once, if the agent may use it
    /// and a provider routes it.
    pub fn listable_models<'a>(&'a self, agent: &'a Agent) -> Vec<&'a str> {
        let candidates = agent
            .models
            .patterns()
            .chain(self.providers.iter().flat_map(|p| p.models.patterns()))
            .filter(|m| crate::policy::globs::is_literal(m));
        let mut listed: Vec<&str> = Vec::new();
        for model in candidates {
            if !listed.contains(&model)
                && agent.models.matches(model)
                && self.route(model).is_some()
            {
                listed.push(model);
            }
        }
        listed
    }
}
