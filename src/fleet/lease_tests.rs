//! Tests of leases: credit, grants, idle returns, sizing, the unavailable modes.

use super::*;

/// Answers the lease's refill: Redis grants nothing and says when to retry.
fn refused_refill(lease: &Lease, retry_after: Duration) {
    let ask = lease.ask().unwrap();
    lease.granted(
        ask,
        Grant {
            granted: 0,
            left: 0,
            retry_after: Some(retry_after),
        },
    );
}

fn link() -> Arc<Link> {
    let link = Arc::new(Link::default());
    link.set_healthy(true);
    link
}

#[test]
fn a_dry_lease_lends_one_lease_then_refuses_once_the_fleet_is_out() {
    let link = link();
    let lease = link.lease("a:rpm".into(), Meter::Window { ttl_secs: 120 }, 100);
    assert_eq!(lease.max, 2);
    // Nothing granted yet: one lease (2 units) of credit.
    assert!(matches!(lease.take(1, 7), Take::Granted { .. }));
    assert!(matches!(lease.take(1, 7), Take::Granted { .. }));
    assert_eq!(
        lease.take(1, 7),
        Take::Exhausted {
            retry_after: Some(PENDING_RETRY)
        },
        "in debt, its refill pending: try again shortly"
    );
    // The refill pays the debt of 2 and grants nothing: the fleet is out.
    let ask = lease.ask().unwrap();
    assert_eq!(ask.debt, 2);
    lease.granted(
        ask,
        Grant {
            granted: 0,
            left: 0,
            retry_after: None,
        },
    );
    assert!(matches!(
        lease.take(1, 7),
        Take::Exhausted { retry_after: None }
    ));
    // A new window starts afresh.
    assert!(matches!(lease.take(1, 8), Take::Granted { .. }));
}

#[test]
fn grants_are_spent_locally_and_idle_leases_are_given_back() {
    let link = link();
    let lease = link.lease("a:tpm".into(), Meter::Window { ttl_secs: 120 }, 10_000);
    assert_eq!(lease.ask(), None, "no window yet: nothing to ask for");
    assert!(
        matches!(lease.take(150, 5), Take::Granted { .. }),
        "on credit"
    );
    let ask = lease.ask().unwrap();
    assert_eq!((ask.window, ask.debt, ask.want), (5, 150, 200));
    lease.granted(
        ask,
        Grant {
            granted: 200,
            left: 9_650,
            retry_after: None,
        },
    );
    assert_eq!(lease.take(150, 5), Take::Granted { fleet_left: 9_700 });
    lease.adjust(100, 5);
    assert_eq!(lease.idle(), None, "just used");
    lease.state.lock().unwrap().last_take -= IDLE;
    assert_eq!(lease.idle(), Some((5, 150)));
    assert_eq!(lease.idle(), None);
}

#[test]
fn a_rate_refusal_says_when_to_retry_and_lifts_by_itself() {
    let link = link();
    let lease = link.lease("a:rpm".into(), Meter::Rate, 10);
    refused_refill(&lease, Duration::from_millis(30));
    match lease.take(1, 0) {
        Take::Exhausted {
            retry_after: Some(wait),
        } => assert!(wait <= Duration::from_millis(30)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(40));
    assert!(matches!(lease.take(1, 0), Take::Granted { .. }));
}

#[test]
fn without_redis_the_mode_decides() {
    let link = Arc::new(Link::default());
    link.set_on_unavailable(OnUnavailable::Deny);
    let lease = link.lease("a:rpm".into(), Meter::Rate, 10);
    assert_eq!(lease.take(1, 0), Take::Unavailable(OnUnavailable::Deny));
    assert_eq!(link.fallbacks.load(Ordering::Relaxed), 1);
}

#[test]
fn leases_are_sized_from_the_rate_spent_within_the_maximum() {
    let link = link();
    let lease = link.lease("t:tpd".into(), Meter::Window { ttl_secs: 10 }, 1_000_000);
    lease.take(1, 3);
    assert_eq!(
        lease.ask().unwrap().want,
        2,
        "a quiet lease asks for little"
    );
    for _ in 0..100 {
        lease.take(500, 3);
    }
    let ask = lease.ask().unwrap();
    assert_eq!(ask.want, lease.max, "a busy one for the maximum");
    assert!(
        ask.debt <= lease.max && ask.debt > lease.max - 500,
        "credit stops at one lease"
    );
}

#[test]
fn credit_never_covers_a_request_larger_than_the_fleet_can_grant() {
    let link = link();
    let lease = link.lease("a:usd".into(), Meter::Window { ttl_secs: 120 }, 10_000_000);
    assert!(
        matches!(
            lease.take(5_000_000_000, 9),
            Take::Exhausted { retry_after: None }
        ),
        "larger than the whole limit: refused until the window ends, even on a fresh lease"
    );
    assert!(matches!(lease.take(u64::MAX, 9), Take::Exhausted { .. }));
    assert!(
        matches!(lease.take(6_000_000, 9), Take::Granted { .. }),
        "within the limit, before any refill: one request on credit"
    );
    let ask = lease.ask().unwrap();
    lease.granted(
        ask,
        Grant {
            granted: 200_000,
            left: 3_000_000,
            retry_after: None,
        },
    );
    assert!(
        matches!(lease.take(3_500_000, 9), Take::Exhausted { .. }),
        "the fleet said 3.2 M are left (with this lease): 3.5 M does not fit"
    );
    assert!(matches!(lease.take(3_100_000, 9), Take::Granted { .. }));
}

/// A monotonic clock that moves only when told to.
#[derive(Debug)]
struct SteppedClock(Mutex<Instant>);

impl Clock for SteppedClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    fn instant(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

#[test]
fn an_exhausted_rate_counts_its_wait_down_on_the_links_clock() {
    let clock = Arc::new(SteppedClock(Mutex::new(Instant::now())));
    let link = Arc::new(Link::with_clock(clock.clone()));
    link.set_healthy(true);
    let lease = link.lease("a:rpm".into(), Meter::Rate, 100);
    while matches!(lease.take(1, 0), Take::Granted { .. }) {}
    refused_refill(&lease, Duration::from_secs(5));
    let wait = |lease: &Arc<Lease>| match lease.take(1, 0) {
        Take::Exhausted { retry_after } => retry_after,
        other => panic!("{other:?}"),
    };
    assert_eq!(wait(&lease), Some(Duration::from_secs(5)));
    *clock.0.lock().unwrap() += Duration::from_secs(2);
    assert_eq!(wait(&lease), Some(Duration::from_secs(3)));
}
