//! Authorization: may this agent make this request? Pure functions over the snapshot, no I/O.
//!
//! The proxy calls these in order (agent status, endpoint, model) and turns a refusal into the
//! SPEC error response; nothing here knows about HTTP sessions.

pub mod globs;
pub mod revocations;

use jiff::Timestamp;

use crate::config::snapshot::{Agent, AgentStatus};
use crate::proxy::error::Refusal;

/// Refuses an agent that may not act at all at `now`: revoked, or suspended (a suspension with
/// an end lifts by itself when that time comes, without a reload).
pub fn check_agent(agent: &Agent, now: Timestamp) -> Result<(), Refusal> {
    match agent.status {
        AgentStatus::Active => Ok(()),
        AgentStatus::Revoked => Err(Refusal::AgentRevoked),
        AgentStatus::Suspended { until: Some(until) } if until <= now => Ok(()),
        AgentStatus::Suspended { .. } => Err(Refusal::AgentSuspended),
    }
}

/// Refuses a path outside the agent's endpoint allowlist (no allowlist: every path).
pub fn check_endpoint(agent: &Agent, path: &str) -> Result<(), Refusal> {
    match &agent.endpoints {
        Some(endpoints) if !endpoints.matches(path) => Err(Refusal::EndpointNotAllowed(
            "this agent may not call this endpoint",
        )),
        _ => Ok(()),
    }
}

/// Refuses a model outside the agent's model allowlist.
pub fn check_model(agent: &Agent, model: &str) -> Result<(), Refusal> {
    if agent.models.matches(model) {
        Ok(())
    } else {
        Err(Refusal::ModelNotAllowed)
    }
}
