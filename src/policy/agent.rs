//! An agent's compiled policy: what it may call, whether it may act at all, its limits.

use http::HeaderValue;
use jiff::Timestamp;

use super::endpoints::Endpoints;
use crate::globs::Globs;
use crate::limits::AgentLimits;

/// An agent's compiled policy.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    /// The team or person responsible (`owner`), for identity lookups and vouching tokens.
    pub owner: Option<String>,
    /// `X-Agent-ID` value, built once.
    pub id_header: HeaderValue,
    pub models: Globs,
    /// The methods and paths it may call (the inference endpoints unless policy lists others).
    pub endpoints: Endpoints,
    /// The services it may call, by service name.
    pub services: std::collections::HashMap<String, super::services::ServiceGrant>,
    /// The MCP servers it may reach, by server name, and what of each exists for it.
    pub mcp: std::collections::HashMap<String, crate::mcp::McpGrant>,
    /// What `POST /v1/verify` may confirm (`None`: nothing).
    pub actions: Option<super::actions::Actions>,
    /// When it may act (`None`: always).
    pub schedule: Option<super::schedule::Schedule>,
    /// `host:port` globs of the plain CONNECT tunnels it may open (empty: none).
    pub destinations: Globs,
    /// Ids of provider objects it may name without having created them (empty: none).
    pub shared_objects: Globs,
    pub status: AgentStatus,
    pub limits: AgentLimits,
    /// The revocations pushed through the fleet's Redis, which apply on top of `status`.
    pub fleet: std::sync::Arc<crate::fleet::FleetState>,
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
    /// Its team (`owner`) is listed under `revocations.teams`.
    TeamRevoked,
}
