//! Tests of token budgets: windows, days in the policy's time zone, leases, concurrency.

use super::*;

const NOON: i64 = 1_800_000_000 - 1_800_000_000 % DAY + DAY / 2;
const UTC: Days = Days { zone: None };

#[test]
fn days_end_at_midnight_in_the_policy_time_zone() {
    let tokyo = Days::new(jiff::tz::TimeZone::get("Asia/Tokyo").ok());
    assert!(tokyo.zone.is_some());
    // Tokyo is UTC+9: its midnight is 15:00 UTC.
    let budget = TokenBudget::new(None, Some(100));
    let before = NOON + 3 * 3600 - 1; // 14:59:59 UTC
    assert!(budget.reserve(100, before, &tokyo).is_ok());
    let refused = budget.reserve(1, before, &tokyo).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    assert!(
        budget.reserve(100, before + 1, &tokyo).is_ok(),
        "a new day in Tokyo"
    );
    assert!(
        budget.reserve(1, before + 1, &UTC).is_ok(),
        "a different day count in UTC"
    );
}

#[test]
fn reservations_fit_or_say_when_the_window_resets() {
    let budget = TokenBudget::new(Some(1000), None);
    let a = budget.reserve(600, NOON, &UTC).unwrap();
    let refused = budget.reserve(500, NOON + 10, &UTC).unwrap_err();
    assert_eq!(refused.retry_after, Duration::from_secs(50));
    assert_eq!(refused.limit, 1000);
    budget.settle(a, 100);
    assert!(
        budget.reserve(500, NOON + 10, &UTC).is_ok(),
        "the settle released 500"
    );
    assert_eq!(
        budget.used(NOON + 10, &UTC),
        (600, 600),
        "100 settled + 500 reserved"
    );
    assert!(
        budget.reserve(1000, NOON + 60, &UTC).is_ok(),
        "a new minute"
    );
}

#[test]
fn the_day_rolls_over_at_midnight_utc_and_late_settles_do_not_leak() {
    let budget = TokenBudget::new(None, Some(10_000));
    let late = budget.reserve(9_000, NOON + DAY / 2 - 1, &UTC).unwrap();
    assert!(budget.reserve(2_000, NOON + DAY / 2 - 1, &UTC).is_err());
    assert!(
        budget.reserve(9_500, NOON + DAY / 2, &UTC).is_ok(),
        "a new day"
    );
    budget.settle(late, 9_000);
    assert_eq!(budget.used(NOON + DAY / 2, &UTC).1, 9_500);
}

#[test]
fn concurrent_reservations_never_pass_the_limit_together() {
    let budget = std::sync::Arc::new(TokenBudget::new(Some(1000), Some(5000)));
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let budget = std::sync::Arc::clone(&budget);
            std::thread::spawn(move || budget.reserve(100, NOON, &UTC).is_ok())
        })
        .collect();
    let passed = handles
        .into_iter()
        .map(|h| h.join())
        .filter(|passed| matches!(passed, Ok(true)))
        .count();
    assert_eq!(passed, 10);
    assert_eq!(budget.used(NOON, &UTC), (1000, 1000));
}
