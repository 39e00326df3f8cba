//! The budgets one request draws from — its agent's and its team's (`owner`), tokens and
//! spend — reserved together before forwarding and settled together when it ends.

use std::sync::Arc;

use super::budget::{BudgetWindow, Days, Exhausted, Reservation, TokenBudget, WindowStatus};

/// The slot of the team's budget in [`Budgets`] and [`Held`] (the agent's is the first).
const TEAM: usize = 1;

/// The token and spend budgets that apply to an agent: its own, then its team's.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    pub tokens: [Option<Arc<TokenBudget>>; 2],
    pub spend: [Option<Arc<TokenBudget>>; 2],
}

/// What one request holds until it settles, slot for slot with [`Budgets`].
#[derive(Debug, Default)]
pub struct Held {
    tokens: [Option<Reservation>; 2],
    spend: [Option<Reservation>; 2],
}

impl Held {
    /// The tightest token window the request was reserved in, the agent's or its team's
    /// (what the `x-ratelimit-*-tokens` headers report).
    pub fn token_headroom(&self) -> Option<WindowStatus> {
        self.tokens
            .iter()
            .flatten()
            .filter_map(|r| r.headroom)
            .min_by_key(|w| w.remaining)
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
    /// Whether any spend budget applies (a model must then have a price).
    pub fn has_spend(&self) -> bool {
        self.spend.iter().any(Option::is_some)
    }

    /// Reserves `tokens` and `cost` (micro-dollars; `None`: the model has no price) in every
    /// budget at `now`, or none of them.
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
        for (slot, budget) in self.tokens.iter().enumerate() {
            if let Some(budget) = budget {
                match budget.reserve(tokens, now, days) {
                    Ok(reservation) => held.tokens[slot] = Some(reservation),
                    Err(mut exhausted) => {
                        exhausted.team = slot == TEAM;
                        self.release(held);
                        return Err(BudgetRefusal::tokens(exhausted));
                    }
                }
            }
        }
        for (slot, budget) in self.spend.iter().enumerate() {
            if let Some(budget) = budget {
                let Some(cost) = cost else {
                    self.release(held);
                    return Err(BudgetRefusal::Unpriced);
                };
                match budget.reserve(cost, now, days) {
                    Ok(reservation) => held.spend[slot] = Some(reservation),
                    Err(mut exhausted) => {
                        exhausted.team = slot == TEAM;
                        self.release(held);
                        return Err(BudgetRefusal::spend(exhausted));
                    }
                }
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
            budgets.iter().enumerate().find_map(|(slot, budget)| {
                let (window, limit) = budget.as_ref()?.never_fits(units)?;
                Some(NeverFits {
                    spend,
                    team: slot == TEAM,
                    window,
                    estimate: units,
                    limit,
                })
            })
        })
    }

    /// Gives back everything `held` reserved (the request was refused or failed).
    pub fn release(&self, held: Held) {
        self.settle(held, Some(0), Some(0));
    }

    /// Settles `held` to the tokens and cost used; `None` keeps what was reserved (the request
    /// was forwarded but nothing was reported).
    pub fn settle(&self, held: Held, tokens: Option<u64>, cost: Option<u64>) {
        for (budgets, reservations, actual) in [
            (&self.tokens, held.tokens, tokens),
            (&self.spend, held.spend, cost),
        ] {
            for (budget, reservation) in budgets.iter().zip(reservations) {
                if let (Some(budget), Some(reservation)) = (budget, reservation) {
                    budget.settle(reservation, actual.unwrap_or(reservation.tokens));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_above_a_whole_window_never_fits() {
        let budgets = Budgets {
            tokens: [
                Some(Arc::new(TokenBudget::new(Some(500), Some(10_000)))),
                Some(Arc::new(TokenBudget::new(None, Some(300)))),
            ],
            spend: [None, None],
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
            tokens: [Some(Arc::clone(&agent)), Some(Arc::clone(&team))],
            spend: [None, None],
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
        budgets.settle(held, Some(50), None);
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
            tokens: [None, None],
            spend: [Some(Arc::new(TokenBudget::new(None, Some(10)))), None],
        };
        assert_eq!(
            budgets.reserve(1, None, 0, &Days::default()).err(),
            Some(BudgetRefusal::Unpriced)
        );
        assert!(budgets.reserve(1, Some(10), 0, &Days::default()).is_ok());
        assert!(matches!(
            budgets.reserve(1, Some(1), 0, &Days::default()),
            Err(BudgetRefusal::Spend(_))
        ));
    }
}
