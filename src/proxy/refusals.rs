//! The one place domain decisions become refusals: policy's [`Denial`], identity's
//! [`Rejection`], the limits' budget, rate and per-user refusals, MCP's denials.

use std::time::Duration;

use super::error::{shown, Refusal, ToRequest};
use crate::identity::Rejection;
use crate::limits::per_user::UserRefusal;
use crate::limits::{BudgetRefusal, RateDecision};
use crate::mcp::{Invalid, McpDenial};
use crate::policy::Denial;

impl Refusal {
    /// An MCP request refused by the agent's grant.
    pub fn mcp(why: McpDenial, id: serde_json::Value) -> Refusal {
        Refusal::Mcp(Box::new(ToRequest { why, id }))
    }

    /// An MCP message Warden does not forward.
    pub fn invalid_mcp(why: Invalid, id: serde_json::Value) -> Refusal {
        Refusal::InvalidMcp(Box::new(ToRequest { why, id }))
    }
}

/// The one place domain decisions become SPEC refusals.
impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        match denial {
            Denial::AgentRevoked => Refusal::AgentRevoked,
            Denial::PrincipalRevoked => Refusal::PrincipalRevoked,
            Denial::AgentSuspended => Refusal::AgentSuspended,
            Denial::EndpointNotAllowed { method, path } => Refusal::EndpointNotAllowed(format!(
                "this agent may not call {method} {} (not in its `endpoints`)",
                shown(&path)
            )),
            Denial::ModelNotAllowed {
                model,
                by_credential,
            } => Refusal::ModelNotAllowed(if by_credential {
                format!(
                    "this credential may not use model {} (its token's `models` claim or delegated scope does not include it)",
                    shown(&model)
                )
            } else {
                format!(
                    "this agent may not use model {} (not in its `models`)",
                    shown(&model)
                )
            }),
            Denial::DestinationNotAllowed(authority) => Refusal::DestinationNotAllowed(format!(
                "this agent may not open a tunnel to {} (not in its `destinations`)",
                shown(&authority)
            )),
            Denial::OutsideSchedule => Refusal::OutsideSchedule,
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Missing => Refusal::MissingCredentials,
            Rejection::Ambiguous => Refusal::AmbiguousCredentials,
            Rejection::Invalid(why) => Refusal::InvalidCredentials(why),
            Rejection::Expired => Refusal::ExpiredCredentials,
            Rejection::BadSignature(why) => Refusal::InvalidSignature(why),
            Rejection::Replayed => Refusal::ReplayedRequest,
            Rejection::Revoked => Refusal::CredentialRevoked,
        }
    }
}

impl Refusal {
    /// The refusal for a budget that does not admit a request for `model`.
    pub fn for_budget(refusal: BudgetRefusal, model: &str) -> Refusal {
        match refusal {
            BudgetRefusal::Tokens(e) => Refusal::TokenBudgetExhausted(e),
            BudgetRefusal::Spend(e) => Refusal::SpendBudgetExhausted(e),
            BudgetRefusal::Unpriced => Refusal::UnpricedModel(model.to_owned()),
            BudgetRefusal::FleetUnavailable => Refusal::FleetUnavailable,
            BudgetRefusal::NeverFits(never) => Refusal::RequestExceedsBudget(never),
        }
    }

    /// The refusal for an end user's limits (`limits.per_user`) that do not admit a request
    /// for `model`.
    pub fn for_user(refusal: UserRefusal, model: &str) -> Refusal {
        match refusal {
            UserRefusal::Rate { retry_after, limit } => Refusal::UserRateLimited {
                retry_after,
                limit: format!("its `per_user.requests_per_minute` ({limit})"),
            },
            UserRefusal::TooManyUsers => Refusal::UserRateLimited {
                retry_after: Duration::from_secs(60),
                limit: format!(
                    "this agent already tracks {} end users today (the most `per_user` keeps)",
                    crate::limits::per_user::MAX_USERS
                ),
            },
            UserRefusal::Budget { exhausted, spend } => {
                Refusal::UserBudgetExhausted { exhausted, spend }
            }
            UserRefusal::Unpriced => Refusal::UnpricedModel(model.to_owned()),
        }
    }

    /// The refusal for a model no provider serves.
    pub fn no_provider_for(model: &str) -> Refusal {
        Refusal::ModelNotFound(format!("no provider serves model {}", shown(model)))
    }

    /// The refusal for a request-rate decision, if it refuses.
    pub fn for_rate(decision: RateDecision) -> Option<Refusal> {
        match decision {
            RateDecision::Allowed { .. } => None,
            RateDecision::Limited { retry_after, limit } => Some(Refusal::RateLimited {
                retry_after,
                limit: format!("this agent's `requests_per_minute` ({limit})"),
            }),
            RateDecision::Unavailable => Some(Refusal::FleetUnavailable),
        }
    }
}
