//! Authorization: may this agent make this request? Pure functions over the snapshot, no I/O.
//!
//! The proxy calls these in order (agent status, endpoint, model) and maps a [`Denial`] to the
//! SPEC error response; nothing here knows about HTTP sessions or error codes.

pub mod actions;
pub mod agent;
pub mod compile;
pub mod endpoints;
pub mod revocations;
pub mod schedule;
pub mod services;
pub mod spec;

use http::Method;

use crate::fleet::AgentRefusal;
use crate::globs::Globs;
use jiff::Timestamp;

pub use agent::{Agent, AgentStatus};

/// Why policy refuses a request, naming what it refused (the refusal message says it back, so
/// whoever reads it can act without looking the policy up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Listed under `revocations.agents`.
    AgentRevoked,
    /// Its team (`owner`) is revoked, by policy or through the fleet.
    PrincipalRevoked,
    /// `status: suspended`, and any `suspended_until` has not come yet.
    AgentSuspended,
    /// The method and path are outside the agent's `endpoints`.
    EndpointNotAllowed { method: Method, path: String },
    /// The model is outside the agent's `models` (`by_credential`: outside what the credential
    /// narrows them to).
    ModelNotAllowed { model: String, by_credential: bool },
    /// A CONNECT tunnel to a `host:port` outside the agent's `destinations`.
    DestinationNotAllowed(String),
    /// Outside the agent's `schedule`.
    OutsideSchedule,
}

/// Refuses an agent that may not act at all at `now`: revoked, or suspended (a suspension with
/// an end lifts by itself when that time comes, without a reload), by its policy or by a
/// revocation pushed through the fleet (either one refuses).
///
/// Also refuses it outside its `schedule`, whatever it asks for.
pub fn check_agent(agent: &Agent, now: Timestamp) -> Result<(), Denial> {
    let team = agent.owner.as_deref();
    match agent.fleet.agent_refusal(&agent.id, team, now.as_second()) {
        Some(AgentRefusal::Revoked) => return Err(Denial::AgentRevoked),
        Some(AgentRefusal::TeamRevoked) => return Err(Denial::PrincipalRevoked),
        Some(AgentRefusal::Suspended) => return Err(Denial::AgentSuspended),
        None => {}
    }
    match agent.status {
        AgentStatus::Active => {}
        AgentStatus::Revoked => return Err(Denial::AgentRevoked),
        AgentStatus::TeamRevoked => return Err(Denial::PrincipalRevoked),
        AgentStatus::Suspended { until: Some(until) } if until <= now => {}
        AgentStatus::Suspended { .. } => return Err(Denial::AgentSuspended),
    }
    match &agent.schedule {
        Some(schedule) if !schedule.allows(now) => Err(Denial::OutsideSchedule),
        _ => Ok(()),
    }
}

/// Refuses a plain tunnel to `authority` (`host:port`, host in lower case) outside the agent's
/// `destinations`.
pub fn check_destination(agent: &Agent, authority: &str) -> Result<(), Denial> {
    if agent.destinations.matches(authority) {
        Ok(())
    } else {
        Err(Denial::DestinationNotAllowed(authority.to_owned()))
    }
}

/// Refuses a method and path outside the agent's endpoint allowlist (none listed: the
/// inference endpoints).
pub fn check_endpoint(agent: &Agent, method: &Method, path: &str) -> Result<(), Denial> {
    if agent.endpoints.allows(method, path) {
        Ok(())
    } else {
        Err(Denial::EndpointNotAllowed {
            method: method.clone(),
            path: path.to_owned(),
        })
    }
}

/// Refuses a model outside the agent's model allowlist, or outside what the credential narrows
/// it to (a token's `models` claim never widens the allowlist).
pub fn check_model(agent: &Agent, narrowing: Option<&Globs>, model: &str) -> Result<(), Denial> {
    let by_credential = !narrowing.is_none_or(|n| n.matches(model));
    if agent.models.matches(model) && !by_credential {
        Ok(())
    } else {
        Err(Denial::ModelNotAllowed {
            model: model.to_owned(),
            by_credential: agent.models.matches(model),
        })
    }
}
