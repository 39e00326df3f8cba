//! What an admitted request holds until it ends — its concurrency slot, its request-rate
//! decision, its token and spend reservations — taken in the order that spends nothing on a
//! refusal, and given back by dropping, so no phase writes a rollback by hand.

use super::error::Refusal;
use crate::config::Snapshot;
use crate::limits::per_user::UserHold;
use crate::limits::{budget, Held, InFlightGuard, RateDecision};
use crate::policy::Agent;

/// The limits one request holds. Each part gives itself back when dropped (the slot frees,
/// the reservations return); [`Admission::settle`] charges the reservations instead.
#[derive(Debug, Default)]
pub struct Admission {
    /// One of the agent's `max_concurrent` slots.
    in_flight: Option<InFlightGuard>,
    /// The agent's request-rate decision (also what the `x-ratelimit-*-requests` headers say).
    pub rate: Option<RateDecision>,
    /// Tokens and micro-dollars reserved in the agent's and its team's budgets.
    pub held: Held,
    /// What the request's end user (`limits.per_user`) holds.
    user: Option<UserHold>,
}

/// What a model call is expected to cost, for its budgets.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    /// Prompt tokens, counted with the model's tokenizer.
    pub prompt: u64,
    /// The most output tokens it can be billed.
    pub output: u64,
}

impl Admission {
    /// The agent's request limits (concurrency, then rate), for every request it makes: model
    /// lists, verifications and service calls count like model calls.
    pub fn take_request_limits(&mut self, agent: &Agent) -> Result<(), Refusal> {
        self.take_slot(agent)?;
        self.take_rate(agent)
    }

    /// A model call's limits: the slot, then the budgets, then the rate — the ones that can be
    /// given back first, because a rate token once taken cannot be returned.
    pub fn take_model_limits(
        &mut self,
        agent: &Agent,
        snapshot: &Snapshot,
        model: &str,
        estimate: Option<Estimate>,
        now: i64,
    ) -> Result<(), Refusal> {
        self.take_slot(agent)?;
        if let Some(Estimate { prompt, output }) = estimate {
            let cost = snapshot
                .prices
                .find(model)
                .map(|price| price.micro_usd(prompt, output));
            let tokens = budget::estimate(output, prompt);
            self.held = agent
                .limits
                .budgets
                .reserve(tokens, cost, now, &snapshot.days)
                .map_err(|refusal| Refusal::for_budget(refusal, model))?;
        }
        self.take_rate(agent)
    }

    /// The limits of the end user a model call is made for (`limits.per_user`), when the
    /// agent has them and the request names a user: its budgets, then its rate.
    pub fn take_user_limits(
        &mut self,
        agent: &Agent,
        snapshot: &Snapshot,
        model: &str,
        estimate: Option<Estimate>,
        user: Option<&str>,
        now: i64,
    ) -> Result<(), Refusal> {
        let (Some(users), Some(user)) = (&agent.limits.per_user, user) else {
            return Ok(());
        };
        let (tokens, cost) = match estimate {
            Some(Estimate { prompt, output }) => (
                budget::estimate(output, prompt),
                (snapshot.prices.find(model)).map(|price| price.micro_usd(prompt, output)),
            ),
            None => (0, Some(0)),
        };
        let hold = users
            .take(user, tokens, cost, now, &snapshot.days)
            .map_err(|refusal| Refusal::for_user(refusal, model))?;
        self.user = Some(hold);
        Ok(())
    }

    /// Gives back the slot and the reservations of a request that was refused; the rate
    /// decision stays for the refusal's headers.
    pub fn release(&mut self) {
        self.in_flight = None;
        self.held = Held::default();
        self.user = None;
    }

    /// Charges the reservations with what was used (`None`: keep what was reserved) and frees
    /// the slot.
    pub fn settle(&mut self, tokens: Option<u64>, cost: Option<u64>) {
        self.in_flight = None;
        std::mem::take(&mut self.held).settle(tokens, cost);
        if let Some(user) = self.user.take() {
            user.settle(tokens, cost);
        }
    }

    fn take_slot(&mut self, agent: &Agent) -> Result<(), Refusal> {
        if let Some((max, in_flight)) = &agent.limits.max_concurrent {
            let slot = in_flight
                .try_acquire(*max)
                .ok_or(Refusal::ConcurrencyLimited(*max))?;
            self.in_flight = Some(slot);
        }
        Ok(())
    }

    /// The request rate alone, for a request that waits on its server rather than works (an
    /// MCP stream of server events, open for a whole session): it holds no concurrency slot.
    pub fn take_rate(&mut self, agent: &Agent) -> Result<(), Refusal> {
        if let Some(rate) = &agent.limits.requests_per_minute {
            let decision = rate.check();
            self.rate = Some(decision);
            if let Some(refusal) = Refusal::for_rate(decision) {
                return Err(refusal);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{compile, source, Environment};
    use crate::limits::LiveState;

    const NOW: i64 = 1_800_000_000;

    fn snapshot() -> Snapshot {
        let text = "version: 1
providers:
  m: {kind: mock, models: ['m-*']}
agents:
  a:
    models: [m-1]
    limits: {requests_per_minute: 1, max_concurrent: 1, tokens_per_minute: 1000}
";
        let live = LiveState::default();
        let sources = source::from_text("p.yaml", text);
        compile(&sources, &Environment::offline(&live))
            .unwrap()
            .snapshot
    }

    const ESTIMATE: Option<Estimate> = Some(Estimate {
        prompt: 40,
        output: 10,
    });

    #[test]
    fn what_a_refused_request_took_goes_back_without_a_rollback() {
        let snapshot = snapshot();
        let agent = &snapshot.agents[0];
        let used = || {
            let budget = agent.limits.budgets.tokens.agent.as_ref().unwrap();
            budget.used(NOW, &snapshot.days).0
        };
        let in_flight = || agent.limits.max_concurrent.as_ref().unwrap().1.current();
        let mut first = Admission::default();
        first
            .take_model_limits(agent, &snapshot, "m-1", ESTIMATE, NOW)
            .unwrap();
        let reserved = used();
        assert!(reserved >= 50 && in_flight() == 1);

        let mut second = Admission::default();
        let refused = second.take_model_limits(agent, &snapshot, "m-1", ESTIMATE, NOW);
        assert_eq!(refused, Err(Refusal::ConcurrencyLimited(1)));
        assert_eq!(
            used(),
            reserved,
            "the slot is taken first: nothing reserved"
        );

        first.release();
        assert_eq!((used(), in_flight()), (0, 0));

        let mut third = Admission::default();
        let refused = third.take_model_limits(agent, &snapshot, "m-1", ESTIMATE, NOW);
        assert!(matches!(refused, Err(Refusal::RateLimited { .. })));
        assert_eq!(used(), reserved, "reserved before the rate refused");
        drop(third);
        assert_eq!((used(), in_flight()), (0, 0), "dropped: all given back");
    }

    #[test]
    fn settling_charges_what_was_used_and_frees_the_slot() {
        let snapshot = snapshot();
        let agent = &snapshot.agents[0];
        let mut admission = Admission::default();
        admission
            .take_model_limits(agent, &snapshot, "m-1", ESTIMATE, NOW)
            .unwrap();
        admission.settle(Some(7), None);
        let budget = agent.limits.budgets.tokens.agent.as_ref().unwrap();
        assert_eq!(budget.used(NOW, &snapshot.days).0, 7);
        assert_eq!(agent.limits.max_concurrent.as_ref().unwrap().1.current(), 0);
        assert!(admission.rate.is_some_and(|r| r.is_allowed()));
    }
}
