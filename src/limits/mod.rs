//! Per-agent limits and the live state behind them.
//!
//! Limit *configuration* lives in the immutable snapshot; limit *state* (token buckets,
//! in-flight counts) must survive a policy reload. [`LiveState`] is the registry that owns that
//! state by agent id: compiling a snapshot asks it for each agent's cells, and the snapshot then
//! holds those `Arc`s directly. A request therefore reaches its agent's counters through the
//! snapshot it already loaded — no map lookup, no lock — and a reload hands the same counters to
//! the new snapshot. The registry's mutex is only taken while compiling and publishing, never on
//! the hot path.

pub mod actions;
pub mod budget;
pub mod concurrency;
pub mod counters;
pub mod held;
pub mod per_user;
pub mod pricing;
pub mod prompt;
pub mod rate;
pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::fleet::{Link, Meter};

pub use budget::{BudgetWindow, Exhausted, Reservation, TokenBudget};
pub use concurrency::{InFlight, InFlightGuard};
pub use counters::AgentCounters;
pub use held::{BudgetRefusal, Budgets, Held, NeverFits, Scoped};
pub use rate::{RateDecision, RequestRate};
pub use spec::Limits;

/// The compiled limits of one agent, pointing at live state.
#[derive(Debug, Clone, Default)]
pub struct AgentLimits {
    pub requests_per_minute: Option<Arc<RequestRate>>,
    pub max_concurrent: Option<(u32, Arc<InFlight>)>,
    /// Token (`tokens_per_minute`, `tokens_per_day`) and spend (`usd_per_day`, micro-dollars)
    /// budgets: the agent's own, then its team's.
    pub budgets: Budgets,
    /// Not a limit: the agent's request and token counts, kept with its limit state so a
    /// reload keeps them too.
    pub counters: Arc<AgentCounters>,
    /// Today's verified actions (`POST /v1/verify`): counts and amounts.
    pub actions: Arc<actions::ActionLedger>,
    /// Today's calls to each service (`/svc/<name>/…`).
    pub service_calls: Arc<actions::ActionLedger>,
    /// Today's MCP tool calls (`per_day`) and argument sums (`sum_per_day`).
    pub mcp_calls: Arc<actions::ActionLedger>,
    /// `per_user`: each end user's rate and budgets.
    pub per_user: Option<Arc<per_user::UserLimits>>,
    /// Output tokens reserved for a request without a cap (`limits.default_output_tokens`).
    pub default_output_tokens: u64,
}

/// A token or spend budget, shared by the fleet through leases when `fleet` is given.
fn shared_budget(
    fleet: Option<&Arc<Link>>,
    state_key: &str,
    what: &str,
    per_minute: Option<u64>,
    per_day: Option<u64>,
) -> TokenBudget {
    let Some(link) = fleet else {
        return TokenBudget::new(per_minute, per_day);
    };
    let minute = per_minute.map(|limit| {
        let key = lease_key(state_key, &format!("{what}:minute"));
        link.lease(key, Meter::Window { ttl_secs: 120 }, limit)
    });
    let day = per_day.map(|limit| {
        let key = lease_key(state_key, &format!("{what}:day"));
        link.lease(
            key,
            Meter::Window {
                ttl_secs: 2 * 86_400,
            },
            limit,
        )
    });
    TokenBudget::shared(per_minute, per_day, [minute, day])
}

/// The day ledger of actions or service calls: the one in use, unless the fleet was turned on
/// or off.
fn ledger(
    current: Option<&Arc<actions::ActionLedger>>,
    fleet: Option<&Arc<Link>>,
    state_key: &str,
    what: &str,
) -> Arc<actions::ActionLedger> {
    match (current, fleet) {
        (Some(ledger), _) if ledger.is_shared() == fleet.is_some() => Arc::clone(ledger),
        (_, Some(link)) => Arc::new(actions::ActionLedger::shared(
            link,
            lease_key(state_key, what),
        )),
        (_, None) => Arc::default(),
    }
}

/// The fleet counter of one limit of an agent (or of a team: its state key is `team:<name>`,
/// and `:` never occurs in an agent id).
pub fn lease_key(state_key: &str, limit: &str) -> String {
    format!("limit:{state_key}:{limit}")
}

/// How long the live state of an agent removed from policy is kept. An agent that comes back
/// within this time (a reverted commit, an agent moved between two files edited one at a time)
/// finds its limits where it left them instead of freshly reset.
pub const REMOVED_AGENT_STATE_TTL: Duration = Duration::from_secs(3600);

/// Live state of every agent, by id; survives reloads.
///
/// The registry holds the cells of the *published* snapshot. Compiling only reads it
/// ([`LiveState::bind`]); publishing a snapshot writes it ([`LiveState::publish`]). A policy that
/// fails to compile therefore changes no live state, whatever it said about limits.
#[derive(Debug, Default)]
pub struct LiveState {
    agents: Mutex<HashMap<String, AgentCells>>,
    /// Leases on the fleet's shared counters and the revocations pushed through Redis.
    pub fleet: Arc<crate::fleet::FleetState>,
}

impl LiveState {
    /// Live state whose fleet leases measure time with `clock` (the proxy's).
    pub fn with_clock(clock: Arc<dyn crate::clock::Clock>) -> Self {
        LiveState {
            agents: Mutex::default(),
            fleet: Arc::new(crate::fleet::FleetState::with_clock(clock)),
        }
    }
}

#[derive(Debug, Default)]
struct AgentCells {
    in_flight: Arc<InFlight>,
    counters: Arc<AgentCounters>,
    rate: Option<Arc<RequestRate>>,
    tokens: Option<Arc<TokenBudget>>,
    spend: Option<Arc<TokenBudget>>,
    actions: Arc<actions::ActionLedger>,
    service_calls: Arc<actions::ActionLedger>,
    mcp_calls: Arc<actions::ActionLedger>,
    per_user: Option<Arc<per_user::UserLimits>>,
    /// When the agent left the published policy; `None` while it is in it.
    removed_at: Option<Instant>,
}

impl LiveState {
    /// Returns the limit state `agent` should use, reusing what the published snapshot uses.
    ///
    /// A request-rate bucket is kept while the configured rate stays the same; a changed rate
    /// starts a new bucket (the old one measured a different quota). The in-flight count is
    /// always kept: requests admitted under the old snapshot still hold slots.
    ///
    /// With `shared` (the policy has `fleet:`), rate and budgets draw on leases of the fleet's
    /// counters; turning the fleet on or off starts them afresh.
    pub fn bind(&self, agent: &str, limits: &Limits, shared: bool) -> AgentLimits {
        let Limits {
            requests_per_minute,
            max_concurrent,
            tokens_per_minute,
            tokens_per_day,
            micro_usd_per_day,
            default_output_tokens,
            per_user,
        } = *limits;
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let cells = agents.get(agent);
        let budgeted = tokens_per_minute.is_some() || tokens_per_day.is_some();
        let fleet = shared.then_some(&self.fleet.link);
        let tokens = budgeted.then(|| match cells.and_then(|c| c.tokens.as_ref()) {
            Some(budget)
                if budget.has_limits(tokens_per_minute, tokens_per_day)
                    && budget.is_shared() == shared =>
            {
                Arc::clone(budget)
            }
            _ => Arc::new(shared_budget(
                fleet,
                agent,
                "tokens",
                tokens_per_minute,
                tokens_per_day,
            )),
        });
        let spend = micro_usd_per_day.map(|limit| match cells.and_then(|c| c.spend.as_ref()) {
            Some(budget)
                if budget.has_limits(None, Some(limit)) && budget.is_shared() == shared =>
            {
                Arc::clone(budget)
            }
            _ => Arc::new(shared_budget(fleet, agent, "usd", None, Some(limit))),
        });
        let rate = requests_per_minute.map(|rpm| match cells.and_then(|c| c.rate.as_ref()) {
            Some(rate) if rate.limit() == rpm.get() && rate.is_shared() == shared => {
                Arc::clone(rate)
            }
            _ => Arc::new(match fleet {
                Some(link) => RequestRate::shared(
                    rpm,
                    link.lease(lease_key(agent, "rpm"), Meter::Rate, u64::from(rpm.get())),
                ),
                None => RequestRate::per_minute(rpm),
            }),
        });
        let in_flight = cells.map_or_else(Arc::default, |c| Arc::clone(&c.in_flight));
        AgentLimits {
            requests_per_minute: rate,
            max_concurrent: max_concurrent.map(|max| (max, in_flight)),
            budgets: Budgets {
                tokens: Scoped {
                    agent: tokens,
                    team: None,
                },
                spend: Scoped {
                    agent: spend,
                    team: None,
                },
            },
            counters: cells.map_or_else(Arc::default, |c| Arc::clone(&c.counters)),
            actions: ledger(cells.map(|c| &c.actions), fleet, agent, "actions"),
            service_calls: ledger(cells.map(|c| &c.service_calls), fleet, agent, "services"),
            mcp_calls: ledger(cells.map(|c| &c.mcp_calls), fleet, agent, "mcp"),
            per_user: per_user.map(|wanted| match cells.and_then(|c| c.per_user.as_ref()) {
                Some(users) if users.limits == wanted => Arc::clone(users),
                _ => Arc::new(per_user::UserLimits::new(wanted)),
            }),
            default_output_tokens: default_output_tokens.unwrap_or(budget::DEFAULT_OUTPUT_ESTIMATE),
        }
    }

    /// Records the cells of a just-published snapshot's agents; agents no longer in it keep
    /// their state for [`REMOVED_AGENT_STATE_TTL`], then it is dropped.
    pub fn publish<'a>(&self, agents: impl IntoIterator<Item = (&'a str, &'a AgentLimits)>) {
        self.publish_at(agents, Instant::now());
    }

    /// Calls `f` with every agent's id and counters (agents removed from policy included until
    /// their state expires: their counts stay in the metrics, as Prometheus counters do).
    pub fn for_each_counters(&self, mut f: impl FnMut(&str, &AgentCounters)) {
        let registry = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, cells) in registry.iter() {
            f(id, &cells.counters);
        }
    }

    fn publish_at<'a>(
        &self,
        agents: impl IntoIterator<Item = (&'a str, &'a AgentLimits)>,
        now: Instant,
    ) {
        let mut registry = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        for cells in registry.values_mut() {
            cells.removed_at.get_or_insert(now);
        }
        for (id, limits) in agents {
            if !registry.contains_key(id) {
                registry.insert(id.to_string(), AgentCells::default());
            }
            let Some(cells) = registry.get_mut(id) else {
                continue;
            };
            cells.removed_at = None;
            cells.rate = limits.requests_per_minute.clone();
            cells.tokens.clone_from(&limits.budgets.tokens.agent);
            cells.spend.clone_from(&limits.budgets.spend.agent);
            cells.counters = Arc::clone(&limits.counters);
            cells.actions = Arc::clone(&limits.actions);
            cells.service_calls = Arc::clone(&limits.service_calls);
            cells.mcp_calls = Arc::clone(&limits.mcp_calls);
            cells.per_user.clone_from(&limits.per_user);
            if let Some((_, in_flight)) = &limits.max_concurrent {
                cells.in_flight = Arc::clone(in_flight);
            }
        }
        registry.retain(|_, cells| {
            cells
                .removed_at
                .is_none_or(|at| now.saturating_duration_since(at) < REMOVED_AGENT_STATE_TTL)
        });
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn rpm(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    fn configured(requests_per_minute: Option<NonZeroU32>, max_concurrent: Option<u32>) -> Limits {
        Limits {
            requests_per_minute,
            max_concurrent,
            ..Limits::default()
        }
    }

    fn publish(live: &LiveState, agents: &[(&str, &AgentLimits)]) {
        live.publish(agents.iter().copied());
    }

    #[test]
    fn rebinding_keeps_state_while_the_rate_is_unchanged() {
        let live = LiveState::default();
        let first = live.bind("a", &configured(rpm(2), Some(4)), false);
        publish(&live, &[("a", &first)]);
        let rate = first.requests_per_minute.clone().unwrap();
        assert!(rate.check().is_allowed());
        assert!(rate.check().is_allowed());
        assert!(!rate.check().is_allowed());

        let second = live.bind("a", &configured(rpm(2), Some(4)), false);
        assert!(Arc::ptr_eq(
            &rate,
            second.requests_per_minute.as_ref().unwrap()
        ));
        assert!(!second.requests_per_minute.unwrap().check().is_allowed());

        let changed = live.bind("a", &configured(rpm(3), Some(4)), false);
        assert!(changed.requests_per_minute.unwrap().check().is_allowed());
        let (_, a) = first.max_concurrent.unwrap();
        let (_, b) = changed.max_concurrent.unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn token_and_spend_budgets_survive_a_reload_with_the_same_limits() {
        let live = LiveState::default();
        let limits = Limits {
            tokens_per_minute: Some(100),
            micro_usd_per_day: Some(5),
            ..Limits::default()
        };
        let first = live.bind("a", &limits, false);
        publish(&live, &[("a", &first)]);
        let days = budget::Days::default();
        let budgets = &first.budgets;
        let _held = budgets.reserve(100, Some(5), 0, &days).unwrap();
        let again = live.bind("a", &limits, false);
        assert!(matches!(
            again.budgets.reserve(1, Some(0), 0, &days),
            Err(BudgetRefusal::Tokens(_))
        ));
        let changed = live.bind(
            "a",
            &Limits {
                tokens_per_minute: Some(200),
                ..limits
            },
            false,
        );
        assert!(
            changed.budgets.reserve(1, Some(0), 0, &days).is_ok(),
            "a changed limit starts a new budget"
        );
    }

    #[test]
    fn binding_without_publishing_changes_nothing() {
        let live = LiveState::default();
        let published = live.bind("a", &configured(rpm(1), None), false);
        publish(&live, &[("a", &published)]);
        assert!(published
            .requests_per_minute
            .as_ref()
            .unwrap()
            .check()
            .is_allowed());
        // A policy that changes the rate but fails to compile is never published...
        let _rejected = live.bind("a", &configured(rpm(5), None), false);
        // ...so the next good policy with the old rate still finds the exhausted bucket.
        let next = live.bind("a", &configured(rpm(1), None), false);
        assert!(!next.requests_per_minute.unwrap().check().is_allowed());
    }

    #[test]
    fn removed_agents_keep_state_until_the_ttl() {
        let live = LiveState::default();
        let limits = live.bind("gone", &configured(rpm(1), None), false);
        let start = Instant::now();
        live.publish_at([("gone", &limits)], start);
        assert!(limits.requests_per_minute.unwrap().check().is_allowed());

        live.publish_at([], start);
        let back = live.bind("gone", &configured(rpm(1), None), false);
        assert!(!back.requests_per_minute.unwrap().check().is_allowed());

        live.publish_at([], start + REMOVED_AGENT_STATE_TTL);
        let fresh = live.bind("gone", &configured(rpm(1), None), false);
        assert!(fresh.requests_per_minute.unwrap().check().is_allowed());
    }
}
