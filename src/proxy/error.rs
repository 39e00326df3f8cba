//! Every refusal Warden answers with: its SPEC code, status, error type and message.
//!
//! Each variant has one row in [`Refusal::row`] (code, status, error type), an exhaustive match
//! with no `_` arm, so a new variant cannot forget any of them. How a refusal is written to the
//! client is `respond.rs`.

use std::time::Duration;

use http::StatusCode;
use pingora::{Error, ErrorType};

use crate::code::Code;
use crate::identity::exchange::Refused;
use crate::limits::{Exhausted, NeverFits};
use crate::mcp::{Invalid, McpDenial};

/// A request Warden refuses or cannot complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not JSON Warden can read exactly as the provider would; the text says why.
    InvalidJson(String),
    MissingModel,
    MissingCredentials,
    /// The credential is not valid; the text says how, without secrets.
    InvalidCredentials(&'static str),
    /// A signature (token or HTTP message) that does not verify or covers too little.
    InvalidSignature(&'static str),
    /// An HTTP message signature's nonce seen before.
    ReplayedRequest,
    /// Two credentials that disagree, or one credential header sent twice.
    AmbiguousCredentials,
    ExpiredCredentials,
    AgentRevoked,
    AgentSuspended,
    CredentialRevoked,
    /// The model is outside the agent's allowlist; the text names it and says why.
    ModelNotAllowed(String),
    /// The path is outside the agent's allowlist, or not in a form Warden can judge; the text
    /// names it.
    EndpointNotAllowed(String),
    /// A tunnel or service call to a destination the agent may not reach; the text names it.
    DestinationNotAllowed(String),
    /// Outside the agent's schedule.
    OutsideSchedule,
    /// The request names a provider object its agent did not create; the text says which.
    ObjectNotOwned(String),
    /// No provider serves the model; the text names it.
    ModelNotFound(String),
    BodyTooLarge,
    /// A request rate is used up; `limit` names it (and its value) for the message.
    RateLimited {
        retry_after: Duration,
        limit: String,
    },
    /// The agent's `max_concurrent` (the value) requests are in flight.
    ConcurrencyLimited(u32),
    /// The request's estimated tokens do not fit a token budget (which one: the window, whose).
    TokenBudgetExhausted(Exhausted),
    /// The request's estimated cost does not fit a spend budget.
    SpendBudgetExhausted(Exhausted),
    /// The request's estimate is above a budget's whole window: retrying cannot help.
    RequestExceedsBudget(NeverFits),
    /// The agent has a spend budget and the model (named) has no price.
    UnpricedModel(String),
    /// The provider could not be reached (or cannot be used); the text says why, without secrets.
    UpstreamUnavailable(String),
    UpstreamTimeout,
    /// A shared limit cannot be checked: the fleet's Redis is unreachable and policy says
    /// `on_unavailable: deny`.
    FleetUnavailable,
    /// An MCP request the agent's grant refuses, answered inside the protocol (a JSON-RPC
    /// error to the request).
    Mcp(Box<ToRequest<McpDenial>>),
    /// An MCP message Warden does not forward (a batch, headers that disagree with the body,
    /// an unknown method), as a JSON-RPC error to the request.
    InvalidMcp(Box<ToRequest<Invalid>>),
    /// `/mcp/<server>` names no `mcp_servers:` entry (the name).
    McpServerNotFound(String),
    /// The agent has no `mcp:` grant for the server (the name).
    McpServerNotAllowed(String),
    /// The request names an MCP session this agent did not open.
    McpSessionNotFound,
    /// A token exchange refused (RFC 6749 §5.2, or wider than its parent).
    TokenExchange(Box<Refused>),
    /// The agent's team is revoked (`revocations.teams`, `warden revoke --team`).
    PrincipalRevoked,
    /// The end user's `per_user.requests_per_minute`, or the agent's table of users today,
    /// is full; `limit` names which.
    UserRateLimited {
        retry_after: Duration,
        limit: String,
    },
    /// The end user's `per_user` token or spend budget does not fit the request.
    UserBudgetExhausted {
        exhausted: Exhausted,
        spend: bool,
    },
    /// The request is in the other API than its provider's and cannot be translated
    /// faithfully; the text says what and why.
    Untranslatable(String),
}

/// A JSON-RPC refusal and the id of the request it answers (`null` when there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRequest<T> {
    pub why: T,
    pub id: serde_json::Value,
}

/// A refusal's fixed facts, declared once per variant in [`Refusal::row`]: the SPEC code, the
/// HTTP status, and the error `type` the OpenAI and Anthropic SDKs map to their exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The SPEC code (`X-Warden-Error`, the body's `code`, metrics and audit).
    pub code: Code,
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The error `type` of the body (`invalid_request_error`, `rate_limit_error`, …).
    pub kind: &'static str,
}

/// A table row; the status as a number reads like the table in SPEC.md.
fn row(code: Code, status: u16, kind: &'static str) -> Row {
    Row {
        code,
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        kind,
    }
}

const INVALID_REQUEST: &str = "invalid_request_error";
const AUTHENTICATION: &str = "authentication_error";
const PERMISSION: &str = "permission_error";
const NOT_FOUND: &str = "not_found_error";
const RATE_LIMIT: &str = "rate_limit_error";
const API: &str = "api_error";

/// How long a client should wait after `concurrency_limited`: a slot frees when any in-flight
/// request ends, which Warden cannot predict, so it suggests a short pause.
const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Refusal {
    /// The refusal's row of the table: code, status and error type, declared together.
    pub fn row(&self) -> Row {
        use Refusal as R;
        match self {
            R::InvalidJson(_) => row(Code::InvalidJson, 400, INVALID_REQUEST),
            R::MissingModel => row(Code::MissingModel, 400, INVALID_REQUEST),
            R::RequestExceedsBudget(_) => row(Code::RequestExceedsBudget, 400, INVALID_REQUEST),
            R::MissingCredentials => row(Code::MissingCredentials, 401, AUTHENTICATION),
            R::InvalidCredentials(_) => row(Code::InvalidCredentials, 401, AUTHENTICATION),
            R::AmbiguousCredentials => row(Code::InvalidCredentials, 401, AUTHENTICATION),
            R::InvalidSignature(_) => row(Code::InvalidSignature, 401, AUTHENTICATION),
            R::ReplayedRequest => row(Code::ReplayedRequest, 401, AUTHENTICATION),
            R::ExpiredCredentials => row(Code::ExpiredCredentials, 401, AUTHENTICATION),
            R::AgentRevoked => row(Code::AgentRevoked, 403, PERMISSION),
            R::AgentSuspended => row(Code::AgentSuspended, 403, PERMISSION),
            R::CredentialRevoked => row(Code::CredentialRevoked, 403, PERMISSION),
            R::ModelNotAllowed(_) => row(Code::ModelNotAllowed, 403, PERMISSION),
            R::UnpricedModel(_) => row(Code::ModelNotAllowed, 403, PERMISSION),
            R::EndpointNotAllowed(_) => row(Code::EndpointNotAllowed, 403, PERMISSION),
            R::DestinationNotAllowed(_) => row(Code::DestinationNotAllowed, 403, PERMISSION),
            R::OutsideSchedule => row(Code::OutsideSchedule, 403, PERMISSION),
            R::ObjectNotOwned(_) => row(Code::ObjectNotOwned, 403, PERMISSION),
            R::ModelNotFound(_) => row(Code::ModelNotFound, 404, NOT_FOUND),
            R::BodyTooLarge => row(Code::BodyTooLarge, 413, INVALID_REQUEST),
            R::RateLimited { .. } => row(Code::RateLimited, 429, RATE_LIMIT),
            R::ConcurrencyLimited(_) => row(Code::ConcurrencyLimited, 429, RATE_LIMIT),
            R::TokenBudgetExhausted(_) => row(Code::TokenBudgetExhausted, 429, RATE_LIMIT),
            R::SpendBudgetExhausted(_) => row(Code::SpendBudgetExhausted, 429, RATE_LIMIT),
            R::UpstreamUnavailable(_) => row(Code::UpstreamUnavailable, 502, API),
            R::UpstreamTimeout => row(Code::UpstreamTimeout, 504, API),
            R::FleetUnavailable => row(Code::FleetUnavailable, 503, API),
            R::Mcp(refused) => match refused.why {
                McpDenial::ToolNotAllowed { .. } => row(Code::ToolNotAllowed, 200, PERMISSION),
                McpDenial::ArgumentNotAllowed { .. } => {
                    row(Code::ArgumentNotAllowed, 200, PERMISSION)
                }
                McpDenial::ToolLimitExhausted { .. } => {
                    row(Code::ToolLimitExhausted, 200, RATE_LIMIT)
                }
                McpDenial::ResourceNotAllowed { .. } => {
                    row(Code::ResourceNotAllowed, 200, PERMISSION)
                }
                McpDenial::PromptNotAllowed { .. } => row(Code::PromptNotAllowed, 200, PERMISSION),
                McpDenial::FleetUnavailable => row(Code::FleetUnavailable, 503, API),
            },
            R::InvalidMcp(_) => row(Code::InvalidMcpRequest, 400, INVALID_REQUEST),
            R::McpServerNotFound(_) => row(Code::McpServerNotFound, 404, NOT_FOUND),
            R::McpServerNotAllowed(_) => row(Code::McpServerNotAllowed, 403, PERMISSION),
            R::McpSessionNotFound => row(Code::McpSessionNotFound, 404, NOT_FOUND),
            R::TokenExchange(refused) => match **refused {
                Refused::Delegation(_) => row(Code::DelegationInvalid, 403, PERMISSION),
                _ => row(Code::InvalidTokenRequest, 400, INVALID_REQUEST),
            },
            R::PrincipalRevoked => row(Code::PrincipalRevoked, 403, PERMISSION),
            R::UserRateLimited { .. } => row(Code::UserRateLimited, 429, RATE_LIMIT),
            R::UserBudgetExhausted { .. } => row(Code::UserBudgetExhausted, 429, RATE_LIMIT),
            R::Untranslatable(_) => row(Code::UntranslatableRequest, 400, INVALID_REQUEST),
        }
    }

    /// The stable SPEC code (also the `code` label of `warden_requests_total`).
    pub fn code(&self) -> Code {
        self.row().code
    }

    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        self.row().status
    }

    /// The OpenAI/Anthropic error `type` for this status, so SDKs pick the right exception.
    pub(super) fn kind(&self) -> &'static str {
        self.row().kind
    }

    /// The human-readable reason (the body's `message`).
    pub fn message(&self) -> String {
        match self {
            Refusal::InvalidJson(why) => format!("request body is not valid JSON: {why}"),
            Refusal::MissingModel => {
                "request has no `model`: Warden routes by the model in the JSON body".into()
            }
            Refusal::MissingCredentials => {
                "no API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`".into()
            }
            Refusal::InvalidCredentials(why) => (*why).into(),
            Refusal::InvalidSignature(why) => (*why).into(),
            Refusal::ReplayedRequest => {
                "this request's signature nonce was already used: sign each request anew".into()
            }
            Refusal::AmbiguousCredentials => "more than one credential was sent (a header twice, or `Authorization` and `x-api-key` that differ): send exactly one".into(),
            Refusal::ExpiredCredentials => "the credential has expired".into(),
            Refusal::AgentRevoked => "this agent's access has been revoked".into(),
            Refusal::AgentSuspended => "this agent is suspended".into(),
            Refusal::CredentialRevoked => "this credential has been revoked".into(),
            Refusal::ModelNotAllowed(why)
            | Refusal::EndpointNotAllowed(why)
            | Refusal::DestinationNotAllowed(why) => why.clone(),
            Refusal::OutsideSchedule => "this agent may not act at this time (its schedule)".into(),
            Refusal::ObjectNotOwned(why) | Refusal::Untranslatable(why) => why.clone(),
            Refusal::ModelNotFound(why) => why.clone(),
            Refusal::BodyTooLarge => "request body is larger than the allowed maximum".into(),
            Refusal::RateLimited { retry_after, limit } => format!(
                "request rate limit reached: {limit} is used up; retry in {}",
                seconds(*retry_after)
            ),
            Refusal::ConcurrencyLimited(max) => format!(
                "too many concurrent requests: this agent's `max_concurrent` ({max}) requests are in flight"
            ),
            Refusal::SpendBudgetExhausted(e) => format!(
                "spend budget exhausted: the request's estimated cost does not fit what is left of {} `{}` (${:.2}); it resets in {}",
                whose(e.team),
                e.window.limit_name(true),
                e.limit as f64 / 1e6,
                seconds(e.retry_after)
            ),
            Refusal::UnpricedModel(model) => format!(
                "model {} has no price in the policy's `pricing`, and this agent has a spend limit (`usd_per_day`): it may only use priced models",
                shown(model)
            ),
            Refusal::TokenBudgetExhausted(e) => format!(
                "token budget exhausted: the request's estimated tokens (its output cap, or the agent's default_output_tokens, plus its prompt counted with the model's tokenizer) do not fit what is left of {} `{}` ({}); it resets in {}",
                whose(e.team),
                e.window.limit_name(false),
                e.limit,
                seconds(e.retry_after)
            ),
            Refusal::RequestExceedsBudget(never) => never_fits_message(never),
            Refusal::UpstreamUnavailable(why) => format!("provider unavailable: {why}"),
            Refusal::UpstreamTimeout => "provider did not answer in time".into(),
            Refusal::FleetUnavailable => "this agent's limits are shared by the fleet, whose Redis cannot be reached; policy refuses until it is back (`on_unavailable: deny`)".into(),
            Refusal::Mcp(refused) => super::jsonrpc::mcp_message(&refused.why),
            Refusal::InvalidMcp(refused) => refused.why.message.clone(),
            Refusal::McpServerNotFound(name) => format!("there is no MCP server {}", shown(name)),
            Refusal::McpServerNotAllowed(name) => format!(
                "this agent may not use MCP server {} (not in its `mcp`)",
                shown(name)
            ),
            Refusal::TokenExchange(refused) => super::token::description(refused),
            Refusal::PrincipalRevoked => "this agent's team has been revoked".into(),
            Refusal::UserRateLimited { retry_after, limit } => format!(
                "request rate limit reached for this end user: {limit}; retry in {}",
                seconds(*retry_after)
            ),
            Refusal::UserBudgetExhausted { exhausted, spend } => format!(
                "this end user's `per_user.{}` ({}) does not fit the request's estimate; it resets in {}",
                exhausted.window.limit_name(*spend),
                if *spend { format!("${:.2}", exhausted.limit as f64 / 1e6) } else { exhausted.limit.to_string() },
                seconds(exhausted.retry_after)
            ),
            Refusal::McpSessionNotFound => "this MCP session was not opened by this agent through Warden (or has been forgotten): open a new one with `initialize`".into(),
        }
    }

    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::RateLimited { retry_after, .. } => Some(*retry_after),
            Refusal::TokenBudgetExhausted(e) | Refusal::SpendBudgetExhausted(e) => {
                Some(e.retry_after)
            }
            Refusal::ConcurrencyLimited(_) | Refusal::FleetUnavailable => {
                Some(CONCURRENCY_RETRY_AFTER)
            }
            Refusal::UserRateLimited { retry_after, .. } => Some(*retry_after),
            Refusal::UserBudgetExhausted { exhausted, .. } => Some(exhausted.retry_after),
            Refusal::Mcp(refused) => match refused.why {
                McpDenial::FleetUnavailable => Some(CONCURRENCY_RETRY_AFTER),
                McpDenial::ToolLimitExhausted { retry_after, .. } => {
                    Some(Duration::from_secs(retry_after))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The refusal for a Pingora error met while talking to the provider.
    pub fn from_upstream_error(e: &Error) -> Refusal {
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Refusal::UpstreamTimeout
            }
            ErrorType::ConnectRefused => Refusal::UpstreamUnavailable("connection refused".into()),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert => {
                Refusal::UpstreamUnavailable("TLS handshake failed".into())
            }
            _ => Refusal::UpstreamUnavailable(e.etype().as_str().to_string()),
        }
    }
}

/// A name from the request (a model, a path) as a refusal message shows it: in backticks, and
/// cut at 200 bytes so that a hostile name cannot make the answer (or a log) large.
pub fn shown(name: &str) -> String {
    const MAX: usize = 200;
    let cut = truncated(name, MAX);
    let more = if cut.len() < name.len() { "…" } else { "" };
    format!("`{cut}{more}`")
}

/// `text` cut to at most `max` bytes on a character boundary, without copying.
pub(super) fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whose budget a message names.
fn whose(team: bool) -> &'static str {
    if team {
        "its team's"
    } else {
        "the agent's"
    }
}

/// A wait as a message says it (whole seconds, at least one).
fn seconds(wait: Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    format!("{} s", secs.max(1))
}

/// Names the estimate and the limit, so the agent (or its operator) can shrink the request.
fn never_fits_message(never: &NeverFits) -> String {
    let whose = whose(never.team);
    let name = never.limit_name();
    if never.spend {
        let usd = |micro: u64| micro as f64 / 1e6;
        format!(
            "this request can never be admitted: its estimated cost (${:.6}) is more than {whose} whole `{name}` (${:.2}); ask for fewer output tokens or send a shorter prompt",
            usd(never.estimate),
            usd(never.limit)
        )
    } else {
        format!(
            "this request can never be admitted: its estimated {} tokens (prompt and output cap) are more than {whose} whole `{name}` ({}); ask for fewer output tokens (max_tokens) or send a shorter prompt",
            never.estimate, never.limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_the_error_type_sdks_expect_for_it() {
        let never = NeverFits {
            spend: false,
            team: false,
            window: crate::limits::budget::BudgetWindow::Minute,
            estimate: 10,
            limit: 5,
        };
        let refusals = [
            Refusal::InvalidJson("x".into()),
            Refusal::MissingModel,
            Refusal::RequestExceedsBudget(never),
            Refusal::MissingCredentials,
            Refusal::AmbiguousCredentials,
            Refusal::ReplayedRequest,
            Refusal::AgentRevoked,
            Refusal::UnpricedModel("m".into()),
            Refusal::ModelNotFound("m".into()),
            Refusal::BodyTooLarge,
            Refusal::ConcurrencyLimited(2),
            Refusal::UpstreamTimeout,
            Refusal::FleetUnavailable,
        ];
        for refusal in refusals {
            let Row { status, kind, .. } = refusal.row();
            let expected = match status.as_u16() {
                400 | 413 => INVALID_REQUEST,
                401 => AUTHENTICATION,
                403 => PERMISSION,
                404 => NOT_FOUND,
                429 => RATE_LIMIT,
                _ => API,
            };
            assert_eq!(kind, expected, "{refusal:?}");
            assert!(!refusal.message().is_empty());
        }
        assert_eq!(
            Refusal::AmbiguousCredentials.code(),
            Code::InvalidCredentials
        );
        assert_eq!(
            Refusal::UnpricedModel("m".into()).code(),
            Code::ModelNotAllowed
        );
    }
}
