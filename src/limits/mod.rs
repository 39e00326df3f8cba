//! Per-agent limits and the live state behind them.
//!
//! Limit *configuration* lives in the immutable snapshot; limit *state* (token buckets,
//! in-flight counts) must survive a policy reload. [`LiveState`] is the registry that owns that
//! state by agent id: compiling a snapshot asks it for each agent's cells, and the snapshot then
//! holds those `Arc`s directly. A request therefore reaches its agent's counters through the
//! snapshot it already loaded — no map lookup, no lock — and a reload hands the same counters to
//! the new snapshot. The registry's mutex is only taken while compiling, never on the hot path.

pub mod concurrency;
pub mod rate;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

pub use concurrency::{InFlight, InFlightGuard};
pub use rate::{RateDecision, RequestRate};

/// The compiled limits of one agent, pointing at live state.
#[derive(Debug, Clone, Default)]
pub struct AgentLimits {
    pub requests_per_minute: Option<Arc<RequestRate>>,
    pub max_concurrent: Option<(u32, Arc<InFlight>)>,
}

/// Live state of every agent, by id; survives reloads.
#[derive(Debug, Default)]
pub struct LiveState {
    agents: Mutex<HashMap<String, AgentCells>>,
}

#[derive(Debug, Default)]
struct AgentCells {
    in_flight: Arc<InFlight>,
    rate: Option<Arc<RequestRate>>,
}

impl LiveState {
    /// Returns the limit state for `agent`, reusing what earlier snapshots used.
    ///
    /// A request-rate bucket is kept while the configured rate stays the same; a changed rate
    /// starts a new bucket (the old one measured a different quota). The in-flight count is
    /// always kept: requests admitted under the old snapshot still hold slots.
    pub fn bind(
        &self,
        agent: &str,
        requests_per_minute: Option<NonZeroU32>,
        max_concurrent: Option<u32>,
    ) -> AgentLimits {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let cells = agents.entry(agent.to_string()).or_default();
        let rate = requests_per_minute.map(|rpm| match &cells.rate {
            Some(rate) if rate.limit() == rpm.get() => Arc::clone(rate),
            _ => {
                let rate = Arc::new(RequestRate::per_minute(rpm));
                cells.rate = Some(Arc::clone(&rate));
                rate
            }
        });
        if requests_per_minute.is_none() {
            cells.rate = None;
        }
        AgentLimits {
            requests_per_minute: rate,
            max_concurrent: max_concurrent.map(|max| (max, Arc::clone(&cells.in_flight))),
        }
    }

    /// Forgets agents that are no longer in policy (called after a snapshot is published).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[test]
    fn rebinding_keeps_state_while_the_rate_is_unchanged() {
        let live = LiveState::default();
        let first = live.bind("a", rpm(2), Some(4));
        let rate = first.requests_per_minute.clone().unwrap();
        assert!(rate.check().is_allowed());
        assert!(rate.check().is_allowed());
        assert!(!rate.check().is_allowed());

        let second = live.bind("a", rpm(2), Some(4));
        assert!(Arc::ptr_eq(
            &rate,
            second.requests_per_minute.as_ref().unwrap()
        ));
        assert!(!second.requests_per_minute.unwrap().check().is_allowed());

        let changed = live.bind("a", rpm(3), Some(4));
        assert!(changed.requests_per_minute.unwrap().check().is_allowed());
        let (_, a) = first.max_concurrent.unwrap();
        let (_, b) = changed.max_concurrent.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn retain_forgets_removed_agents() {
        let live = LiveState::default();
        let rate = live.bind("gone", rpm(1), None).requests_per_minute.unwrap();
        assert!(rate.check().is_allowed());
        live.retain(|id| id != "gone");
        let fresh = live.bind("gone", rpm(1), None).requests_per_minute.unwrap();
        assert!(fresh.check().is_allowed());
    }
}
