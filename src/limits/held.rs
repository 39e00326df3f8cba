//! The budgets one request draws from — its agent's and its team's (`owner`), tokens and
//! spend — reserved together before forwarding and settled together when it ends.

use std::sync::Arc;

use super::budget::{BudgetWindow, Days, Exhausted, Reservation, TokenBudget, WindowStatus};

/// One thing for the agent and one for its team (`owner`): which is which is a name, not a
/// position.
#[derive(Debug, Clone, Default)]
pub struct Scoped<T> {
    pub agent: T,
    pub team: T,
}

impl<T> Scoped<T> {
    /// Both, the agent's first, each with whether it is the team's.
    fn each(&self) -> [(bool, &T); 2] {
        [(false, &self.agent), (true, &self.team)]
    }

    fn get_mut(&mut self, team: bool) -> &mut T {
        if team {
            &mut self.team
        } else {
            &mut self.agent
        }
    }
}

/// The token and spend budgets that apply to an agent: its own and its team's.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    pub tokens: Scoped<Option<Arc<TokenBudget>>>,
    pub spend: Scoped<Option<Arc<TokenBudget>>>,
}

impl Budgets {
    /// Makes `team`'s own budgets (a team's limits compiled as an agent's) the team part of
    /// these.
    pub fn share_with(&mut self, team: &Budgets) {
        self.tokens.team.clone_from(&team.tokens.agent);
        self.spend.team.clone_from(&team.spend.agent);
    }
}

/// One reservation and the budget it was taken from.
#[derive(Debug)]
struct Hold {
    budget: Arc<TokenBudget>,
    reservation: Reservation,
}

/// What one request holds until it settles. Dropped unsettled (refused by a later limit, or
/// never forwarded), it gives everything back: no caller writes a rollback.
#[derive(Debug, Default)]
pub struct Held {
    tokens: Scoped<Option<Hold>>,
    spend: Scoped<Option<Hold>>,
}

impl Held {
    /// The tightest token window the request was reserved in, the agent's or its team's
    /// (what the `x-ratelimit-*-tokens` headers report).
    pub fn token_headroom(&self) -> Option<WindowStatus> {
        self.tokens
            .each()
            .into_iter()
            .filter_map(|(_, hold)| hold.as_ref()?.reservation.headroom)
            .min_by_key(|w| w.remaining)
    }

    /// Settles to the tokens and cost used; `None` keeps what was reserved (the request was
    /// forwarded but nothing was reported).
    pub fn settle(mut self, tokens: Option<u64>, cost: Option<u64>) {
        self.settle_in_place(tokens, cost);
    }

    fn settle_in_place(&mut self, tokens: Option<u64>, cost: Option<u64>) {
        for (holds, actual) in [(&mut self.tokens, tokens), (&mut self.spend, cost)] {
            for hold in [holds.agent.take(), holds.team.take()]
                .into_iter()
                .flatten()
            {
                let used = actual.unwrap_or(hold.reservation.tokens);
                hold.budget.settle(hold.reservation, used);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.settle_in_place(Some(0), Some(0));
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    Tokens(Exhausted),
    Spend(Exhausted),
    /// A spend budget applies and the model has no price.
    Unpriced,
    /// A budget is shared by the fleet, whose Redis is unreachable, and policy says
    /// `on_unavailable: deny`.
    FleetUnavailable,
    /// The request's estimate is above a window's whole limit: waiting cannot help.
    NeverFits(NeverFits),
}

/// A request larger than a budget's whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeverFits {
    /// Spend (micro-dollars) rather than tokens.
    pub spend: bool,
    /// The team's budget rather than the agent's.
    pub team: bool,
    pub window: BudgetWindow,
    pub estimate: u64,
    pub limit: u64,
}

impl NeverFits {
    /// The policy name of the limit (`tokens_per_minute`, `usd_per_day`, …).
    pub fn limit_name(&self) -> &'static str {
        self.window.limit_name(self.spend)
    }
}

impl BudgetRefusal {
    fn tokens(e: Exhausted) -> Self {
        if e.fleet_unavailable {
            BudgetRefusal::FleetUnavailable
        } else {
            BudgetRefusal::Tokens(e)
        }
    }

    fn spend(e: Exhausted) -> Self {
        if e.fleet_unavailable {
            BudgetRefusal::FleetUnavailable
        } else {
            BudgetRefusal::Spend(e)
        }
    }
}

impl Budgets {
    /// Whether any budget applies (the request's estimate is then needed).
    pub fn any(&self) -> bool {
        self.tokens.agent.is_some() || self.tokens.team.is_some() || self.has_spend()
    }

    /// Whether any spend budget applies (a model must then have a price).
    pub fn has_spend(&self) -> bool {
        self.spend.agent.is_some() || self.spend.team.is_some()
    }

    /// Reserves `tokens` and `cost` (micro-dollars; `None`: the model has no price) in every
    /// budget at `now`, or none of them (what was taken before a refusal is given back as
    /// the partial [`Held`] drops).
    pub fn reserve(
        &self,
        tokens: u64,
        cost: Option<u64>,
        now: i64,
        days: &Days,
    ) -> Result<Held, BudgetRefusal> {
        if let Some(never) = self.never_fits(tokens, cost) {
            return Err(BudgetRefusal::NeverFits(never));
        }
        let mut held = Held::default();
        for (team, budget) in self.tokens.each() {
            if let Some(budget) = budget {
                let reservation = budget
                    .reserve(tokens, now, days)
                    .map_err(|exhausted| BudgetRefusal::tokens(Exhausted { team, ..exhausted }))?;
                *held.tokens.get_mut(team) = Some(Hold {
                    budget: Arc::clone(budget),
                    reservation,
                });
            }
        }
        for (team, budget) in self.spend.each() {
            if let Some(budget) = budget {
                let cost = cost.ok_or(BudgetRefusal::Unpriced)?;
                let reservation = budget
                    .reserve(cost, now, days)
                    .map_err(|exhausted| BudgetRefusal::spend(Exhausted { team, ..exhausted }))?;
                *held.spend.get_mut(team) = Some(Hold {
                    budget: Arc::clone(budget),
                    reservation,
                });
            }
        }
        Ok(held)
    }

    /// The first budget (tokens, then spend; the agent's, then its team's) whose whole window
    /// `tokens` or `cost` is larger than.
    fn never_fits(&self, tokens: u64, cost: Option<u64>) -> Option<NeverFits> {
        let units = [(false, Some(tokens)), (true, cost)];
        units.into_iter().find_map(|(spend, units)| {
            let budgets = if spend { &self.spend } else { &self.tokens };
            let units = units?;
            budgets.each().into_iter().find_map(|(team, budget)| {
                let (window, limit) = budget.as_ref()?.never_fits(units)?;
                Some(NeverFits {
                    spend,
                    team,
                    window,
                    estimate: units,
                    limit,
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_above_a_whole_window_never_fits() {
        let budgets = Budgets {
            tokens: Scoped {
                agent: Some(Arc::new(TokenBudget::new(Some(500), Some(10_000)))),
                team: Some(Arc::new(TokenBudget::new(None, Some(300)))),
            },
            spend: Scoped::default(),
        };
        let never = |tokens| match budgets.reserve(tokens, None, 60, &Days::default()) {
            Err(BudgetRefusal::NeverFits(n)) => Some((n.team, n.limit_name(), n.limit)),
            _ => None,
        };
        assert_eq!(never(600), Some((false, "tokens_per_minute", 500)));
        assert_eq!(never(400), Some((true, "tokens_per_day", 300)));
        assert_eq!(never(300), None);
    }

    #[test]
    fn a_team_refusal_gives_back_the_agents_reservation() {
        let agent = Arc::new(TokenBudget::new(Some(1000), None));
        let team = Arc::new(TokenBudget::new(Some(300), None));
        let budgets = Budgets {
            tokens: Scoped {
                agent: Some(Arc::clone(&agent)),
                team: Some(Arc::clone(&team)),
            },
            spend: Scoped::default(),
        };
        let held = budgets.reserve(200, None, 60, &Days::default()).unwrap();
        assert!(matches!(
            budgets.reserve(200, None, 60, &Days::default()),
            Err(BudgetRefusal::Tokens(_))
        ));
        assert_eq!(
            agent.used(60, &Days::default()).0,
            200,
            "the refused reservation was given back"
        );
        held.settle(Some(50), None);
        assert_eq!(
            (
                agent.used(60, &Days::default()).0,
                team.used(60, &Days::default()).0
            ),
            (50, 50)
        );
    }

    #[test]
    fn spend_needs_a_price() {
        let budgets = Budgets {
            tokens: Scoped::default(),
            spend: Scoped {
                agent: Some(Arc::new(TokenBudget::new(None, Some(10)))),
                team: None,
            },
        };
        assert_eq!(
            budgets.reserve(1, None, 0, &Days::default()).err(),
            Some(BudgetRefusal::Unpriced)
        );
        let held = budgets.reserve(1, Some(10), 0, &Days::default()).unwrap();
        assert!(matches!(
            budgets.reserve(1, Some(1), 0, &Days::default()),
            Err(BudgetRefusal::Spend(_))
        ));
        drop(held);
        assert!(
            budgets.reserve(1, Some(10), 0, &Days::default()).is_ok(),
            "a dropped reservation was given back"
        );
    }
}
