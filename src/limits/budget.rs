//! Token budgets per minute and per calendar day (in the policy's time zone, UTC by default):
//! reserve before forwarding, settle after.
//!
//! A request reserves its estimate (its output cap plus its prompt, estimated) against every
//! window of the agent at once, under the agent's own lock: concurrent requests cannot all pass
//! before any is charged, and a check cannot race its increment. When the response is done the
//! reservation is settled to the tokens the provider reported, releasing the difference. A
//! window that rolled over while the request ran is not charged again.
//!
//! With `fleet:` each window is also a counter shared by the fleet: the reservation is taken
//! from this Warden's lease on it (and settled there), and the local windows only count what
//! this Warden used, enforced while Redis is unreachable under `on_unavailable: local`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::fleet::{Lease, OnUnavailable, Take};

/// Output tokens reserved for a request that sets no cap (`max_tokens` and the like).
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

/// How calendar days are counted: in the policy's `timezone`, UTC without one.
#[derive(Debug, Clone, Default)]
pub struct Days {
    zone: Option<jiff::tz::TimeZone>,
}

impl Days {
    pub fn new(zone: Option<jiff::tz::TimeZone>) -> Self {
        Days { zone }
    }

    /// The day `now` (Unix seconds) falls in, as a number that grows by one each midnight.
    pub(super) fn id(&self, now: i64) -> i64 {
        (now + self.offset(now)).div_euclid(DAY)
    }

    /// Seconds from `now` to the next midnight.
    pub(super) fn until_midnight(&self, now: i64) -> i64 {
        let Some(zone) = &self.zone else {
            return DAY - now.rem_euclid(DAY);
        };
        let next = jiff::Timestamp::from_second(now)
            .ok()
            .map(|t| t.to_zoned(zone.clone()))
            .and_then(|today| today.date().tomorrow().ok())
            .and_then(|tomorrow| tomorrow.to_zoned(zone.clone()).ok())
            .map(|midnight| midnight.timestamp().as_second());
        next.map_or(DAY - (now + self.offset(now)).rem_euclid(DAY), |next| {
            (next - now).max(1)
        })
    }

    fn offset(&self, now: i64) -> i64 {
        match (&self.zone, jiff::Timestamp::from_second(now)) {
            (Some(zone), Ok(at)) => i64::from(zone.to_offset(at).seconds()),
            _ => 0,
        }
    }
}

/// One agent's token windows; live state (kept across reloads while its limits stay the same).
#[derive(Debug)]
pub struct TokenBudget {
    per_minute: Option<u64>,
    per_day: Option<u64>,
    state: Mutex<Windows>,
    /// This Warden's leases on the fleet's minute and day counters, with `fleet:`.
    leases: [Option<Arc<Lease>>; 2],
}

#[derive(Debug, Default)]
struct Windows {
    minute: Window,
    day: Window,
}

/// A fixed window: which one (its start divided by its length) and the tokens charged in it.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    id: i64,
    used: u64,
}

impl Window {
    fn at(&mut self, id: i64) -> &mut Self {
        if self.id != id {
            *self = Window { id, used: 0 };
        }
        self
    }

    /// Charges `tokens` and returns the window's new total.
    fn add(&mut self, tokens: u64) -> u64 {
        self.used = self.used.saturating_add(tokens);
        self.used
    }
}

/// Who decides a reservation of a shared budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shared {
    /// The fleet's leases took it.
    Leased,
    /// The local windows (no fleet, or Redis unreachable under `on_unavailable: local`).
    Local,
    /// Nobody: Redis is unreachable and policy says `on_unavailable: allow`.
    Unlimited,
}

/// One window's state, as the usage endpoint reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WindowStatus {
    pub used: u64,
    pub limit: u64,
    pub remaining: u64,
    pub reset_secs: i64,
}

/// Tokens held for one request until it settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub tokens: u64,
    /// The tightest window once this request was reserved (what the `x-ratelimit-*-tokens`
    /// headers say): the fleet's count for a shared budget, as Redis last said.
    pub headroom: Option<WindowStatus>,
    minute: i64,
    day: i64,
    /// Taken from the fleet's leases (settled there too).
    leased: bool,
}

/// A reservation that does not fit: which window, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub retry_after: Duration,
    pub limit: u64,
    /// What is left in it (less than the request needs; 0 when the fleet's is dry).
    pub remaining: u64,
    /// The window that has no room (the refusal names its limit).
    pub window: BudgetWindow,
    /// The team's budget rather than the agent's (set by the caller that knows whose it is).
    pub team: bool,
    /// Not exhausted but unknown: the fleet's Redis is unreachable and policy says
    /// `on_unavailable: deny`.
    pub fleet_unavailable: bool,
}

/// A budget's window, as policy names its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetWindow {
    Minute,
    Day,
}

impl BudgetWindow {
    /// The policy name of this window's limit, for tokens or for spend (`usd_per_day`, …).
    pub fn limit_name(self, spend: bool) -> &'static str {
        match (spend, self) {
            (false, BudgetWindow::Minute) => "tokens_per_minute",
            (false, BudgetWindow::Day) => "tokens_per_day",
            (true, BudgetWindow::Minute) => "usd_per_minute",
            (true, BudgetWindow::Day) => "usd_per_day",
        }
    }
}

/// The tokens to reserve for a request: its estimated prompt plus the most output it can be
/// billed (its cap, or the agent's default, times its choices).
pub fn estimate(output_bound: u64, prompt_tokens: u64) -> u64 {
    output_bound.saturating_add(prompt_tokens)
}

impl TokenBudget {
    pub fn new(per_minute: Option<u64>, per_day: Option<u64>) -> Self {
        TokenBudget {
            per_minute,
            per_day,
            state: Mutex::new(Windows::default()),
            leases: [None, None],
        }
    }

    /// A budget whose windows are shared by the fleet through `leases` (minute, day).
    pub fn shared(
        per_minute: Option<u64>,
        per_day: Option<u64>,
        leases: [Option<Arc<Lease>>; 2],
    ) -> Self {
        TokenBudget {
            leases,
            ..Self::new(per_minute, per_day)
        }
    }

    /// Whether this budget is shared by the fleet.
    pub fn is_shared(&self) -> bool {
        self.leases.iter().any(Option::is_some)
    }

    /// Takes `tokens` from every lease (minute, day), or from none; says who decides, and what
    /// the fleet has left in each window it took from.
    fn take_leases(
        &self,
        tokens: u64,
        ids: [i64; 2],
        resets: [i64; 2],
    ) -> Result<(Shared, [Option<u64>; 2]), Exhausted> {
        let mut left = [None, None];
        // At most the minute's lease is taken when the day's refuses: given back on the way out.
        let mut taken: Option<(&Arc<Lease>, i64)> = None;
        let give_back = |taken: Option<(&Arc<Lease>, i64)>| {
            if let Some((lease, window)) = taken {
                lease.adjust(i64::try_from(tokens).unwrap_or(i64::MAX), window);
            }
        };
        let windows = [BudgetWindow::Minute, BudgetWindow::Day];
        for (slot, (((lease, id), reset), window)) in self
            .leases
            .iter()
            .zip(ids)
            .zip(resets)
            .zip(windows)
            .enumerate()
        {
            let Some(lease) = lease else { continue };
            match lease.take(tokens, id) {
                Take::Granted { fleet_left } => {
                    taken = Some((lease, id));
                    left[slot] = Some(fleet_left);
                }
                Take::Exhausted { retry_after } => {
                    give_back(taken);
                    return Err(Exhausted {
                        retry_after: retry_after.unwrap_or(Duration::from_secs(
                            u64::try_from(reset).unwrap_or(1).max(1),
                        )),
                        limit: lease.limit,
                        remaining: 0,
                        window,
                        team: false,
                        fleet_unavailable: false,
                    });
                }
                Take::Unavailable(mode) => {
                    give_back(taken);
                    return match mode {
                        OnUnavailable::Local => Ok((Shared::Local, [None, None])),
                        OnUnavailable::Allow => Ok((Shared::Unlimited, [None, None])),
                        OnUnavailable::Deny => Err(Exhausted {
                            retry_after: Duration::from_secs(1),
                            limit: lease.limit,
                            remaining: 0,
                            window,
                            team: false,
                            fleet_unavailable: true,
                        }),
                    };
                }
            }
        }
        Ok((Shared::Leased, left))
    }

    /// Whether this budget is for these limits (a reload with other limits starts afresh).
    /// The window limit `units` can never fit in, however long the agent waits: the smaller
    /// of the per-minute and per-day limits, when `units` is above it.
    pub fn never_fits(&self, units: u64) -> Option<(BudgetWindow, u64)> {
        [
            (BudgetWindow::Minute, self.per_minute),
            (BudgetWindow::Day, self.per_day),
        ]
        .into_iter()
        .filter_map(|(window, limit)| Some((window, limit?)))
        .filter(|(_, limit)| units > *limit)
        .min_by_key(|(_, limit)| *limit)
    }

    pub fn has_limits(&self, per_minute: Option<u64>, per_day: Option<u64>) -> bool {
        self.per_minute == per_minute && self.per_day == per_day
    }

    /// Reserves `tokens` in every window at `now` (Unix seconds), or says which does not fit.
    pub fn reserve(&self, tokens: u64, now: i64, days: &Days) -> Result<Reservation, Exhausted> {
        let (minute, day) = (now.div_euclid(MINUTE), days.id(now));
        let resets = [MINUTE - now.rem_euclid(MINUTE), days.until_midnight(now)];
        let (shared, fleet_left) = if self.is_shared() {
            self.take_leases(tokens, [minute, day], resets)?
        } else {
            (Shared::Local, [None, None])
        };
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        for (limit, used, id, reset, window) in [
            (
                self.per_minute,
                &mut state.minute,
                minute,
                resets[0],
                BudgetWindow::Minute,
            ),
            (
                self.per_day,
                &mut state.day,
                day,
                resets[1],
                BudgetWindow::Day,
            ),
        ] {
            if let (Some(limit), Shared::Local) = (limit, shared) {
                let used = used.at(id).used;
                if used.saturating_add(tokens) > limit {
                    return Err(Exhausted {
                        retry_after: Duration::from_secs(u64::try_from(reset).unwrap_or(1).max(1)),
                        limit,
                        remaining: limit.saturating_sub(used),
                        window,
                        team: false,
                        fleet_unavailable: false,
                    });
                }
            }
        }
        let used = [
            state.minute.at(minute).add(tokens),
            state.day.at(day).add(tokens),
        ];
        let headroom = self.headroom(shared, used, fleet_left, resets);
        Ok(Reservation {
            tokens,
            headroom,
            minute,
            day,
            leased: shared == Shared::Leased,
        })
    }

    /// The tightest window once `used` is counted (what the `x-ratelimit-*-tokens` headers
    /// say): the fleet's count for a leased budget, none for one the fleet does not enforce.
    fn headroom(
        &self,
        shared: Shared,
        used: [u64; 2],
        fleet_left: [Option<u64>; 2],
        resets: [i64; 2],
    ) -> Option<WindowStatus> {
        [self.per_minute, self.per_day]
            .into_iter()
            .zip(used)
            .zip(fleet_left)
            .zip(resets)
            .filter_map(|(((limit, used), fleet_left), reset_secs)| {
                let limit = limit?;
                let remaining = match (shared, fleet_left) {
                    (Shared::Unlimited, _) => return None,
                    (Shared::Leased, Some(left)) => left.min(limit),
                    _ => limit.saturating_sub(used),
                };
                Some(WindowStatus {
                    used: limit.saturating_sub(remaining),
                    limit,
                    remaining,
                    reset_secs,
                })
            })
            .min_by_key(|w| w.remaining)
    }

    /// Settles `reservation` to the `actual` tokens used: the difference is released (or, when
    /// the estimate was short, charged) in the windows it was reserved in, if they are current.
    pub fn settle(&self, reservation: Reservation, actual: u64) {
        if reservation.leased {
            let back = i64::try_from(reservation.tokens)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(actual).unwrap_or(i64::MAX));
            let windows = [reservation.minute, reservation.day];
            for (lease, window) in self.leases.iter().zip(windows) {
                if let Some(lease) = lease {
                    lease.adjust(back, window);
                }
            }
        }
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        for (window, id) in [
            (&mut state.minute, reservation.minute),
            (&mut state.day, reservation.day),
        ] {
            if window.id == id {
                window.used = window
                    .used
                    .saturating_sub(reservation.tokens)
                    .saturating_add(actual);
            }
        }
    }

    /// Each configured window at `now`: tokens charged (settled and reserved), its limit, and
    /// seconds until it resets — for the usage endpoint.
    pub fn status(&self, now: i64, days: &Days) -> [Option<WindowStatus>; 2] {
        let (minute, day) = self.used(now, days);
        let window = |limit: Option<u64>, used: u64, reset_secs: i64| {
            limit.map(|limit| WindowStatus {
                used,
                limit,
                remaining: limit.saturating_sub(used),
                reset_secs,
            })
        };
        [
            window(self.per_minute, minute, MINUTE - now.rem_euclid(MINUTE)),
            window(self.per_day, day, days.until_midnight(now)),
        ]
    }

    /// Tokens charged in the current minute and day at `now` (settled and still reserved).
    pub fn used(&self, now: i64, days: &Days) -> (u64, u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let minute = state.minute.at(now.div_euclid(MINUTE)).used;
        let day = state.day.at(days.id(now)).used;
        (minute, day)
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
