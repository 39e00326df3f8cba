//! An agent's verified actions today (`POST /v1/verify`): how many of each action and how many
//! micro-dollars of amounts it has reserved since its day began. Live state: kept across
//! reloads, reset at the policy time zone's midnight.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::budget::Days;

/// One agent's action ledger for the current day.
#[derive(Debug, Default)]
pub struct ActionLedger {
    today: Mutex<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    day: i64,
    micro_usd: u64,
    counts: HashMap<String, u32>,
}

/// What an action would take from the day, and the day's limits it must fit.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    pub action: &'a str,
    /// The action's amount in micro-dollars (0 without one).
    pub micro_usd: u64,
    /// The day's count limit for this action, if any.
    pub per_day: Option<u32>,
    /// The day's amount limit, if any.
    pub micro_usd_per_day: Option<u64>,
}

/// Why a charge does not fit the day, and what is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Day {
    /// The count limit would be passed.
    pub over_count: bool,
    /// The amount limit would be passed.
    pub over_amount: bool,
    /// This action's count left today (after the charge, when it was taken).
    pub count_left: Option<u32>,
    /// Micro-dollars left today (after the charge, when it was taken).
    pub micro_usd_left: Option<u64>,
    /// Seconds until the day's counts reset.
    pub resets_in: i64,
}

impl ActionLedger {
    /// Takes `charge` from today's ledger if it fits every limit (`take`), or only reports
    /// what is left (`take == false`, or when it does not fit): all or nothing, under this
    /// agent's lock only.
    pub fn charge(&self, charge: Charge<'_>, take: bool, now: i64, days: &Days) -> Day {
        let mut ledger = self.today.lock().unwrap_or_else(PoisonError::into_inner);
        let day = days.id(now);
        if ledger.day != day {
            *ledger = Ledger {
                day,
                ..Ledger::default()
            };
        }
        let count = ledger.counts.get(charge.action).copied().unwrap_or(0);
        let over_count = charge.per_day.is_some_and(|max| count >= max);
        let over_amount = charge
            .micro_usd_per_day
            .is_some_and(|max| ledger.micro_usd.saturating_add(charge.micro_usd) > max);
        let taken = take && !over_count && !over_amount;
        if taken {
            *ledger.counts.entry(charge.action.to_string()).or_insert(0) += 1;
            ledger.micro_usd = ledger.micro_usd.saturating_add(charge.micro_usd);
        }
        let count = ledger.counts.get(charge.action).copied().unwrap_or(0);
        Day {
            over_count,
            over_amount,
            count_left: charge.per_day.map(|max| max.saturating_sub(count)),
            micro_usd_left: charge
                .micro_usd_per_day
                .map(|max| max.saturating_sub(ledger.micro_usd)),
            resets_in: days.until_midnight(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 1_764_072_000; // 2025-11-25T12:00:00Z

    fn email(micro_usd: u64) -> Charge<'static> {
        Charge {
            action: "send_email",
            micro_usd,
            per_day: Some(2),
            micro_usd_per_day: Some(100_000_000),
        }
    }

    #[test]
    fn counts_and_amounts_fit_or_nothing_is_taken() {
        let ledger = ActionLedger::default();
        let days = Days::new(None);
        let first = ledger.charge(email(60_000_000), true, NOON, &days);
        assert_eq!(
            (first.count_left, first.micro_usd_left),
            (Some(1), Some(40_000_000))
        );
        let too_much = ledger.charge(email(50_000_000), true, NOON, &days);
        assert!(too_much.over_amount && !too_much.over_count);
        assert_eq!(too_much.count_left, Some(1)); // nothing taken
        ledger.charge(email(0), true, NOON, &days);
        let third = ledger.charge(email(0), true, NOON, &days);
        assert!(third.over_count);
        assert_eq!(third.resets_in, 12 * 3600);
    }

    #[test]
    fn the_day_rolls_over_at_midnight_in_the_policy_zone() {
        let ledger = ActionLedger::default();
        let utc = Days::new(None);
        ledger.charge(email(0), true, NOON, &utc);
        ledger.charge(email(0), true, NOON, &utc);
        assert!(
            ledger
                .charge(email(0), true, NOON + 11 * 3600, &utc)
                .over_count
        );
        let next_day = ledger.charge(email(0), true, NOON + 12 * 3600, &utc);
        assert_eq!((next_day.over_count, next_day.count_left), (false, Some(1)));
        // In Tokyo (UTC+9) the same noon UTC is 21:00: the day ends 3 h later.
        let tokyo = Days::new(jiff::tz::TimeZone::get("Asia/Tokyo").ok());
        assert_eq!(
            ActionLedger::default()
                .charge(email(0), false, NOON, &tokyo)
                .resets_in,
            3 * 3600
        );
    }
}
