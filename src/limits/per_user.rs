//! `limits.per_user`: what one end user of an agent may take — requests per minute, tokens and
//! USD per day — keyed by the user the request names (OpenAI's `user`, Anthropic's
//! `metadata.user_id`, or `X-Warden-User`).
//!
//! Live state per agent, in a table bounded to [`MAX_USERS`] users a day: a request for a new
//! user once the table is full is refused (`user_rate_limited`) rather than evicting anyone,
//! so an agent cannot reset a user's limits by inventing users, nor grow memory. The table is
//! emptied when the policy day turns (the day budgets reset then anyway). Per Warden, not
//! shared by the fleet.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use super::budget::{Days, Exhausted, Reservation, TokenBudget};
use super::rate::{RateDecision, RequestRate};

/// Most users tracked per agent per day.
pub const MAX_USERS: usize = 10_000;
/// Longest user id kept as is; longer ones are keyed by their SHA-256 (the limit still holds).
const MAX_USER_ID: usize = 256;

/// `limits.per_user` compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerUser {
    pub requests_per_minute: Option<NonZeroU32>,
    pub tokens_per_day: Option<u64>,
    pub micro_usd_per_day: Option<u64>,
}

impl PerUser {
    /// Whether a request needs its token estimate (a budget applies).
    pub fn budgeted(&self) -> bool {
        self.tokens_per_day.is_some() || self.micro_usd_per_day.is_some()
    }
}

/// One agent's users today.
#[derive(Debug)]
pub struct UserLimits {
    pub limits: PerUser,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    day: i64,
    users: HashMap<Box<str>, Arc<UserCells>>,
}

#[derive(Debug)]
struct UserCells {
    rate: Option<RequestRate>,
    tokens: Option<Arc<TokenBudget>>,
    spend: Option<Arc<TokenBudget>>,
}

/// Why a user's request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRefusal {
    /// The user's `requests_per_minute` (the value) is used up.
    Rate {
        retry_after: std::time::Duration,
        limit: u32,
    },
    /// The agent already tracks [`MAX_USERS`] users today.
    TooManyUsers,
    /// A token (`spend: false`) or spend budget of the user does not fit the request.
    Budget { exhausted: Exhausted, spend: bool },
    /// `usd_per_day` applies and the model has no price.
    Unpriced,
}

/// What a request holds of its user's budgets until it settles; dropped unsettled, it gives
/// everything back.
#[derive(Debug, Default)]
pub struct UserHold {
    tokens: Option<(Arc<TokenBudget>, Reservation)>,
    spend: Option<(Arc<TokenBudget>, Reservation)>,
}

impl UserHold {
    /// Settles to the tokens and cost used (`None`: keep what was reserved).
    pub fn settle(mut self, tokens: Option<u64>, cost: Option<u64>) {
        self.settle_in_place(tokens, cost);
    }

    fn settle_in_place(&mut self, tokens: Option<u64>, cost: Option<u64>) {
        for (hold, used) in [(self.tokens.take(), tokens), (self.spend.take(), cost)] {
            if let Some((budget, reservation)) = hold {
                let used = used.unwrap_or(reservation.tokens);
                budget.settle(reservation, used);
            }
        }
    }
}

impl Drop for UserHold {
    fn drop(&mut self) {
        self.settle_in_place(Some(0), Some(0));
    }
}

impl UserLimits {
    pub fn new(limits: PerUser) -> Self {
        UserLimits {
            limits,
            table: Mutex::default(),
        }
    }

    /// How many users are tracked today.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .users
            .len()
    }

    /// Takes one request of `user` (with `tokens` and `cost` to reserve; `cost` `None` when
    /// the model has no price) at `now`: budgets first, then the rate, all or nothing.
    pub fn take(
        &self,
        user: &str,
        tokens: u64,
        cost: Option<u64>,
        now: i64,
        days: &Days,
    ) -> Result<UserHold, UserRefusal> {
        let cells = self.cells(user, days.id(now))?;
        let mut hold = UserHold::default();
        if let Some(budget) = &cells.tokens {
            let reservation =
                budget
                    .reserve(tokens, now, days)
                    .map_err(|exhausted| UserRefusal::Budget {
                        exhausted,
                        spend: false,
                    })?;
            hold.tokens = Some((Arc::clone(budget), reservation));
        }
        if let Some(budget) = &cells.spend {
            let cost = cost.ok_or(UserRefusal::Unpriced)?;
            let reservation =
                budget
                    .reserve(cost, now, days)
                    .map_err(|exhausted| UserRefusal::Budget {
                        exhausted,
                        spend: true,
                    })?;
            hold.spend = Some((Arc::clone(budget), reservation));
        }
        if let Some(rate) = &cells.rate {
            if let RateDecision::Limited { retry_after, limit } = rate.check() {
                return Err(UserRefusal::Rate { retry_after, limit });
            }
        }
        Ok(hold)
    }

    /// The user's cells, made on first use today; `TooManyUsers` when the table is full.
    fn cells(&self, user: &str, day: i64) -> Result<Arc<UserCells>, UserRefusal> {
        let key: Box<str> = if user.len() <= MAX_USER_ID {
            user.into()
        } else {
            use sha2::Digest;
            format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(user.as_bytes()))
            )
            .into()
        };
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if table.day != day {
            *table = Table {
                day,
                users: HashMap::new(),
            };
        }
        if let Some(cells) = table.users.get(&key) {
            return Ok(Arc::clone(cells));
        }
        if table.users.len() >= MAX_USERS {
            return Err(UserRefusal::TooManyUsers);
        }
        let limits = self.limits;
        let cells = Arc::new(UserCells {
            rate: limits.requests_per_minute.map(RequestRate::per_minute),
            tokens: limits
                .tokens_per_day
                .map(|n| Arc::new(TokenBudget::new(None, Some(n)))),
            spend: limits
                .micro_usd_per_day
                .map(|n| Arc::new(TokenBudget::new(None, Some(n)))),
        });
        table.users.insert(key, Arc::clone(&cells));
        Ok(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 1_764_072_000;

    #[test]
    fn each_user_has_its_own_budget_and_the_table_is_bounded() {
        let limits = UserLimits::new(PerUser {
            tokens_per_day: Some(100),
            ..PerUser::default()
        });
        let days = Days::new(None);
        let first = limits.take("alice", 60, None, NOON, &days).unwrap();
        first.settle(Some(60), None);
        assert!(matches!(
            limits.take("alice", 60, None, NOON, &days),
            Err(UserRefusal::Budget { spend: false, .. })
        ));
        assert!(
            limits.take("bob", 60, None, NOON, &days).is_ok(),
            "another user, another budget"
        );
        drop(limits.take("alice", 40, None, NOON, &days).unwrap());
        assert!(
            limits.take("alice", 40, None, NOON, &days).is_ok(),
            "a dropped hold gave back"
        );
        for i in limits.tracked()..MAX_USERS {
            limits.take(&format!("u{i}"), 1, None, NOON, &days).unwrap();
        }
        assert_eq!(
            limits.take("newcomer", 1, None, NOON, &days).err(),
            Some(UserRefusal::TooManyUsers)
        );
        assert!(
            limits.take("alice", 0, None, NOON, &days).is_ok(),
            "known users go on"
        );
        assert!(
            limits
                .take("newcomer", 1, None, NOON + 86_400, &days)
                .is_ok(),
            "a new day, a new table"
        );
        assert_eq!(limits.tracked(), 1);
    }
}
