//! An agent's counted calls today — verified actions (`POST /v1/verify`), service calls, MCP
//! tool calls: how many of each, how many micro-dollars of amounts, and the sums of counted
//! arguments it has reserved since its day began. Live state: kept across reloads, reset at
//! the policy time zone's midnight.
//!
//! With `fleet:` the day's counts and amount are counters shared by the fleet: a charge is
//! taken from this Warden's leases on them, and the local ledger decides only while Redis is
//! unreachable under `on_unavailable: local`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::budget::Days;
use crate::fleet::{Lease, Link, Meter, OnUnavailable, Take};

/// How long a day counter lives in Redis after its last change.
const DAY_TTL_SECS: u64 = 2 * 86_400;

/// One agent's action ledger for the current day.
#[derive(Debug, Default)]
pub struct ActionLedger {
    today: Mutex<Ledger>,
    fleet: Option<Shared>,
}

/// The fleet's counters of a ledger: leases made on first use, by action (counts) and for the
/// day's amount.
#[derive(Debug)]
struct Shared {
    link: Arc<Link>,
    /// The counters' key prefix (`limit:<agent>:actions`).
    key: String,
    leases: Mutex<HashMap<String, Arc<Lease>>>,
}

#[derive(Debug, Default)]
struct Ledger {
    day: i64,
    micro_usd: u64,
    counts: HashMap<String, u32>,
    sums: HashMap<String, u64>,
}

/// What an action would take from the day, and the day's limits it must fit.
#[derive(Debug, Clone, Copy)]
pub struct Charge<'a> {
    /// The day's counters this action counts against, each with its limit: one per policy key
    /// that names the action (an exact name, or a glob shared by every action it matches).
    pub counts: &'a [(&'a str, u32)],
    /// The day's sums this call adds to: each counter, what the call adds (in millionths of
    /// the argument's unit) and the day's limit.
    pub sums: &'a [(&'a str, u64, u64)],
    /// The action's amount in micro-dollars (0 without one).
    pub micro_usd: u64,
    /// The day's amount limit, if any.
    pub micro_usd_per_day: Option<u64>,
}

/// Why a charge does not fit the day, and what is left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Day {
    /// The count limit would be passed.
    pub over_count: bool,
    /// A sum's limit would be passed.
    pub over_sum: bool,
    /// The amount limit would be passed.
    pub over_amount: bool,
    /// This action's count left today (after the charge, when it was taken).
    pub count_left: Option<u32>,
    /// Micro-dollars left today (after the charge, when it was taken).
    pub micro_usd_left: Option<u64>,
    /// Seconds until the day's counts reset.
    pub resets_in: i64,
    /// The counts are shared by the fleet, whose Redis is unreachable, and policy says
    /// `on_unavailable: deny`: nothing was taken.
    pub fleet_unavailable: bool,
}

/// What the fleet's leases said about a charge.
enum Fleet {
    /// Taken from the leases; what the fleet has left.
    Taken {
        count_left: Option<u64>,
        micro_usd_left: Option<u64>,
    },
    /// The fleet's counts are out.
    Over {
        count: bool,
        sum: bool,
        amount: bool,
    },
    /// The local ledger decides (`Some(false)`: without its limits).
    Local {
        enforce: bool,
    },
    Unavailable,
}

impl ActionLedger {
    /// A ledger whose counts are shared by the fleet through `link`, under counters named
    /// after `key`.
    pub fn shared(link: &Arc<Link>, key: String) -> Self {
        ActionLedger {
            today: Mutex::default(),
            fleet: Some(Shared {
                link: Arc::clone(link),
                key,
                leases: Mutex::default(),
            }),
        }
    }

    /// Whether the counts are shared by the fleet.
    pub fn is_shared(&self) -> bool {
        self.fleet.is_some()
    }

    /// Takes `charge` from today's ledger if it fits every limit (`take`), or only reports
    /// what is left (`take == false`, or when it does not fit): all or nothing, under this
    /// agent's lock only (and, shared, from this Warden's leases, never waiting on Redis).
    pub fn charge(&self, charge: Charge<'_>, take: bool, now: i64, days: &Days) -> Day {
        let day = days.id(now);
        let fleet = match (&self.fleet, take) {
            (Some(shared), true) => shared.take(&charge, day),
            _ => Fleet::Local { enforce: true },
        };
        let mut ledger = self.today.lock().unwrap_or_else(PoisonError::into_inner);
        if ledger.day != day {
            *ledger = Ledger {
                day,
                ..Ledger::default()
            };
        }
        let enforce = matches!(fleet, Fleet::Local { enforce: true });
        let (over_count, over_sum, over_amount) = match fleet {
            Fleet::Over { count, sum, amount } => (count, sum, amount),
            _ => (
                enforce
                    && charge
                        .counts
                        .iter()
                        .any(|(key, max)| ledger.count(key) >= *max),
                enforce
                    && charge
                        .sums
                        .iter()
                        .any(|(key, units, max)| ledger.sum(key).saturating_add(*units) > *max),
                enforce
                    && charge
                        .micro_usd_per_day
                        .is_some_and(|max| ledger.micro_usd.saturating_add(charge.micro_usd) > max),
            ),
        };
        let unavailable = matches!(fleet, Fleet::Unavailable);
        if take && !over_count && !over_sum && !over_amount && !unavailable {
            for (key, _) in charge.counts {
                match ledger.counts.get_mut(*key) {
                    Some(count) => *count += 1,
                    None => {
                        ledger.counts.insert((*key).to_string(), 1);
                    }
                }
            }
            for (key, units, _) in charge.sums {
                let sum = ledger.sums.entry((*key).to_string()).or_default();
                *sum = sum.saturating_add(*units);
            }
            ledger.micro_usd = ledger.micro_usd.saturating_add(charge.micro_usd);
        }
        let count_left = charge
            .counts
            .iter()
            .map(|(key, max)| max.saturating_sub(ledger.count(key)))
            .min();
        let mut left = Day {
            over_count,
            over_sum,
            over_amount,
            count_left,
            micro_usd_left: charge
                .micro_usd_per_day
                .map(|max| max.saturating_sub(ledger.micro_usd)),
            resets_in: days.until_midnight(now),
            fleet_unavailable: unavailable,
        };
        if let Fleet::Taken {
            count_left,
            micro_usd_left,
        } = fleet
        {
            left.count_left = count_left.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            left.micro_usd_left = micro_usd_left;
        }
        left
    }
}

impl Ledger {
    /// Today's count of the counter `key`.
    fn count(&self, key: &str) -> u32 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Today's sum of the counter `key`.
    fn sum(&self, key: &str) -> u64 {
        self.sums.get(key).copied().unwrap_or(0)
    }
}

impl Shared {
    /// The lease on counter `name`, made on first use (or anew when its limit changed).
    fn lease(&self, name: &str, limit: u64) -> Arc<Lease> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lease) = leases.get(name).filter(|l| l.limit == limit) {
            return Arc::clone(lease);
        }
        let key = format!("{}:{name}", self.key);
        let lease = self.link.lease(
            key,
            Meter::Window {
                ttl_secs: DAY_TTL_SECS,
            },
            limit,
        );
        leases.insert(name.to_string(), Arc::clone(&lease));
        lease
    }

    /// Takes one of each of the call's counts, its sums and its amount from the leases, or
    /// none.
    fn take(&self, charge: &Charge<'_>, day: i64) -> Fleet {
        let counts = charge
            .counts
            .iter()
            .map(|(key, max)| (self.lease(&format!("count:{key}"), u64::from(*max)), 1));
        let sums = charge
            .sums
            .iter()
            .map(|(key, units, max)| (self.lease(&format!("sum:{key}"), *max), *units));
        let amount = charge
            .micro_usd_per_day
            .map(|max| (self.lease("usd", max), charge.micro_usd));
        let mut taken: Vec<(Arc<Lease>, u64)> = Vec::new();
        let (mut count_left, mut micro_usd_left) = (None::<u64>, None);
        let (is_sum, is_amount) = (charge.counts.len(), charge.counts.len() + charge.sums.len());
        for (slot, (lease, units)) in counts.chain(sums).chain(amount).enumerate() {
            let outcome = match lease.take(units, day) {
                Take::Granted { fleet_left } => {
                    if slot == is_amount {
                        micro_usd_left = Some(fleet_left);
                    } else if slot < is_sum {
                        count_left = Some(count_left.map_or(fleet_left, |l| l.min(fleet_left)));
                    }
                    taken.push((lease, units));
                    continue;
                }
                Take::Exhausted { .. } => Fleet::Over {
                    count: slot < is_sum,
                    sum: (is_sum..is_amount).contains(&slot),
                    amount: slot == is_amount,
                },
                Take::Unavailable(OnUnavailable::Local) => Fleet::Local { enforce: true },
                Take::Unavailable(OnUnavailable::Allow) => Fleet::Local { enforce: false },
                Take::Unavailable(OnUnavailable::Deny) => Fleet::Unavailable,
            };
            for (lease, units) in taken {
                lease.adjust(i64::try_from(units).unwrap_or(i64::MAX), day);
            }
            return outcome;
        }
        Fleet::Taken {
            count_left,
            micro_usd_left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: i64 = 1_764_072_000; // 2025-11-25T12:00:00Z

    fn email(micro_usd: u64) -> Charge<'static> {
        Charge {
            counts: &[("send_email", 2)],
            sums: &[],
            micro_usd,
            micro_usd_per_day: Some(100_000_000),
        }
    }

    #[test]
    fn an_action_counts_against_every_key_that_names_it() {
        let ledger = ActionLedger::default();
        let days = Days::new(None);
        let charge = |counts| Charge {
            counts,
            sums: &[],
            micro_usd: 0,
            micro_usd_per_day: None,
        };
        let a = [("transfer_*", 2), ("transfer_a", 5)];
        let b = [("transfer_*", 2)];
        assert_eq!(
            ledger.charge(charge(&a), true, NOON, &days).count_left,
            Some(1)
        );
        assert!(!ledger.charge(charge(&b), true, NOON, &days).over_count);
        let third = ledger.charge(charge(&a), true, NOON, &days);
        assert!(
            third.over_count,
            "the glob's two are spent by a and b together"
        );
        assert_eq!(
            ledger
                .charge(charge(&[("transfer_a", 5)]), false, NOON, &days)
                .count_left,
            Some(4)
        );
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
