//! Per-request state, and the plan the main request hands to its upstream subrequest.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::HeaderValue;

use super::error::Refusal;
use super::usage::{Usage, UsageMeter};
use crate::config::Snapshot;
use crate::limits::{InFlightGuard, RateDecision};

/// A request admitted for forwarding: everything the upstream side needs, decided once.
///
/// The main request builds it after identifying, authorizing and limiting; the subrequest that
/// talks to the provider reads it (it never re-decides) and records the [`Outcome`].
#[derive(Debug)]
pub struct Forward {
    pub snapshot: Arc<Snapshot>,
    pub agent: usize,
    pub provider: usize,
    pub request_id: HeaderValue,
    pub upstream_path: String,
    pub body_len: usize,
    pub rate: Option<RateDecision>,
    pub outcome: OnceLock<Outcome>,
}

/// What happened upstream, recorded by the subrequest when it ends.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Provider response status, if a response header arrived.
    pub status: Option<u16>,
    pub usage: Option<Usage>,
    /// Why the provider could not be used, if it failed before answering.
    pub failure: Option<Refusal>,
    /// When the provider's response header arrived.
    pub first_byte: Option<Instant>,
}

/// One request's context (Pingora's `CTX`), for both the main request and its subrequest.
pub struct RequestCtx {
    pub started: Instant,
    /// Wall-clock arrival time: the "now" of credential expiry and suspension checks, and the
    /// audit event's `ts`.
    pub arrived: jiff::Timestamp,
    /// Loaded once at the start of the main request; every decision reads this one.
    pub snapshot: Option<Arc<Snapshot>>,
    pub request_id: Option<HeaderValue>,
    pub agent: Option<usize>,
    /// Hash of the API key the agent presented, as stored in the snapshot (never the secret).
    pub key: Option<crate::identity::api_key::KeyHash>,
    pub model: Option<String>,
    pub provider: Option<usize>,
    pub rate: Option<RateDecision>,
    /// Set when Warden answered with an error instead of the provider's response.
    pub refusal: Option<Refusal>,
    /// Held until the request ends, whatever the outcome.
    pub in_flight: Option<InFlightGuard>,
    pub forward: Option<Arc<Forward>>,
    /// True in the subrequest that talks to the provider.
    pub is_subrequest: bool,
    pub meter: UsageMeter,
    pub upstream_status: Option<u16>,
    pub upstream_failure: Option<Refusal>,
    /// Main request: when the subrequest to the provider started. Subrequest: when the
    /// provider's response header arrived.
    pub upstream_mark: Option<Instant>,
}

impl RequestCtx {
    pub fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            arrived: jiff::Timestamp::now(),
            snapshot: None,
            request_id: None,
            agent: None,
            key: None,
            model: None,
            provider: None,
            rate: None,
            refusal: None,
            in_flight: None,
            forward: None,
            is_subrequest: false,
            meter: UsageMeter::Off,
            upstream_status: None,
            upstream_failure: None,
            upstream_mark: None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
