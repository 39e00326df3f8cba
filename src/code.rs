//! Every outcome code a request can end with, declared once.
//!
//! The same values are the SPEC error codes clients see (`X-Warden-Error`, the JSON `code`),
//! the `code` label of `warden_requests_total` and `warden_request_duration_seconds`, and the
//! audit record's `code`. An enum keeps the label set closed: no request can mint a new value.

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Forwarded, and the provider answered 1xx–3xx (or Warden answered, e.g. `GET /v1/models`).
    Ok,
    /// The provider answered 4xx.
    Upstream4xx,
    /// The provider answered 5xx.
    Upstream5xx,
    /// The client went away before a response was sent.
    ClientClosed,
    InvalidJson,
    MissingModel,
    MissingCredentials,
    InvalidCredentials,
    ExpiredCredentials,
    InvalidSignature,
    ReplayedRequest,
    AgentRevoked,
    AgentSuspended,
    CredentialRevoked,
    ModelNotAllowed,
    EndpointNotAllowed,
    DestinationNotAllowed,
    OutsideSchedule,
    /// The request names a provider object (a response, a file, …) its agent did not create.
    ObjectNotOwned,
    /// `POST /v1/verify`: the action is not among the agent's allowed actions.
    ActionNotAllowed,
    /// `POST /v1/verify`: the action matches the agent's denied actions.
    ActionDenied,
    /// `POST /v1/verify`: over a monetary limit, or a currency not accepted.
    MonetaryLimit,
    /// `POST /v1/verify`: over the action's daily count.
    ActionLimit,
    ModelNotFound,
    BodyTooLarge,
    RateLimited,
    ConcurrencyLimited,
    TokenBudgetExhausted,
    SpendBudgetExhausted,
    /// The request's estimate is above a budget's whole window: it can never be admitted.
    RequestExceedsBudget,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// The fleet's Redis is unreachable and policy says `on_unavailable: deny`.
    FleetUnavailable,
    /// MCP: the tool does not exist for the agent.
    ToolNotAllowed,
    /// MCP: an argument of the call breaks the tool's rules.
    ArgumentNotAllowed,
    /// MCP: the tool's `per_day` or `sum_per_day` is used up.
    ToolLimitExhausted,
    ResourceNotAllowed,
    PromptNotAllowed,
    /// `/mcp/<server>`: the agent has no grant for the server.
    McpServerNotAllowed,
    /// `/mcp/<server>`: no such server.
    McpServerNotFound,
    /// The MCP session was not opened by this agent (or is not known).
    McpSessionNotFound,
    /// An MCP message Warden does not forward: a batch, routing headers that disagree with
    /// the body, an unknown method.
    InvalidMcpRequest,
    /// Token exchange: the token asked for is wider than its parent (scope, expiry, depth).
    DelegationInvalid,
    /// Token exchange: a request RFC 6749 refuses (`invalid_request`, `invalid_grant`, …).
    InvalidTokenRequest,
    /// The agent's team (`owner`) is revoked.
    PrincipalRevoked,
    /// An end user's `per_user.requests_per_minute` is used up (or too many users today).
    UserRateLimited,
    /// An end user's `per_user` token or spend budget does not fit.
    UserBudgetExhausted,
    /// The request is in the other API than its provider's, and cannot be translated
    /// faithfully (`n > 1` to Anthropic, an unknown content part, …).
    UntranslatableRequest,
}

impl Code {
    /// Every code, in declaration order (`ALL[c.index()] == c`).
    pub const ALL: [Code; 48] = [
        Code::Ok,
        Code::Upstream4xx,
        Code::Upstream5xx,
        Code::ClientClosed,
        Code::InvalidJson,
        Code::MissingModel,
        Code::MissingCredentials,
        Code::InvalidCredentials,
        Code::ExpiredCredentials,
        Code::InvalidSignature,
        Code::ReplayedRequest,
        Code::AgentRevoked,
        Code::AgentSuspended,
        Code::CredentialRevoked,
        Code::ModelNotAllowed,
        Code::EndpointNotAllowed,
        Code::DestinationNotAllowed,
        Code::OutsideSchedule,
        Code::ObjectNotOwned,
        Code::ActionNotAllowed,
        Code::ActionDenied,
        Code::MonetaryLimit,
        Code::ActionLimit,
        Code::ModelNotFound,
        Code::BodyTooLarge,
        Code::RateLimited,
        Code::ConcurrencyLimited,
        Code::TokenBudgetExhausted,
        Code::SpendBudgetExhausted,
        Code::RequestExceedsBudget,
        Code::UpstreamUnavailable,
        Code::UpstreamTimeout,
        Code::FleetUnavailable,
        Code::ToolNotAllowed,
        Code::ArgumentNotAllowed,
        Code::ToolLimitExhausted,
        Code::ResourceNotAllowed,
        Code::PromptNotAllowed,
        Code::McpServerNotAllowed,
        Code::McpServerNotFound,
        Code::McpSessionNotFound,
        Code::InvalidMcpRequest,
        Code::DelegationInvalid,
        Code::InvalidTokenRequest,
        Code::PrincipalRevoked,
        Code::UserRateLimited,
        Code::UserBudgetExhausted,
        Code::UntranslatableRequest,
    ];

    /// The code as written on the wire, in metrics and in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Upstream4xx => "upstream_4xx",
            Code::Upstream5xx => "upstream_5xx",
            Code::ClientClosed => "client_closed",
            Code::InvalidJson => "invalid_json",
            Code::MissingModel => "missing_model",
            Code::MissingCredentials => "missing_credentials",
            Code::InvalidCredentials => "invalid_credentials",
            Code::ExpiredCredentials => "expired_credentials",
            Code::InvalidSignature => "invalid_signature",
            Code::ReplayedRequest => "replayed_request",
            Code::AgentRevoked => "agent_revoked",
            Code::AgentSuspended => "agent_suspended",
            Code::CredentialRevoked => "credential_revoked",
            Code::ModelNotAllowed => "model_not_allowed",
            Code::EndpointNotAllowed => "endpoint_not_allowed",
            Code::DestinationNotAllowed => "destination_not_allowed",
            Code::OutsideSchedule => "outside_schedule",
            Code::ObjectNotOwned => "object_not_owned",
            Code::ActionNotAllowed => "action_not_allowed",
            Code::ActionDenied => "action_denied",
            Code::MonetaryLimit => "monetary_limit",
            Code::ActionLimit => "action_limit",
            Code::ModelNotFound => "model_not_found",
            Code::BodyTooLarge => "body_too_large",
            Code::RateLimited => "rate_limited",
            Code::ConcurrencyLimited => "concurrency_limited",
            Code::TokenBudgetExhausted => "token_budget_exhausted",
            Code::SpendBudgetExhausted => "spend_budget_exhausted",
            Code::RequestExceedsBudget => "request_exceeds_budget",
            Code::UpstreamUnavailable => "upstream_unavailable",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::FleetUnavailable => "fleet_unavailable",
            Code::ToolNotAllowed => "tool_not_allowed",
            Code::ArgumentNotAllowed => "argument_not_allowed",
            Code::ToolLimitExhausted => "tool_limit_exhausted",
            Code::ResourceNotAllowed => "resource_not_allowed",
            Code::PromptNotAllowed => "prompt_not_allowed",
            Code::McpServerNotAllowed => "mcp_server_not_allowed",
            Code::McpServerNotFound => "mcp_server_not_found",
            Code::McpSessionNotFound => "mcp_session_not_found",
            Code::InvalidMcpRequest => "invalid_mcp_request",
            Code::DelegationInvalid => "delegation_invalid",
            Code::InvalidTokenRequest => "invalid_token_request",
            Code::PrincipalRevoked => "principal_revoked",
            Code::UserRateLimited => "user_rate_limited",
            Code::UserBudgetExhausted => "user_budget_exhausted",
            Code::UntranslatableRequest => "untranslatable_request",
        }
    }

    /// Position in [`Code::ALL`], for per-code tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once_in_order() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
