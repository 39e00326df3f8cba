//! Requests per minute, as a GCRA token bucket (governor): lock-free, one atomic per agent.
//!
//! With `fleet:` the bucket is shared by every Warden: a request takes from this Warden's
//! lease on the fleet's bucket (the same GCRA, kept in Redis). The local bucket counts every
//! request this Warden admits and decides while Redis is unreachable under
//! `on_unavailable: local`.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::fleet::{Lease, OnUnavailable, Take};

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One agent's request-rate bucket: bursts up to the per-minute limit, refilled evenly.
///
/// Generic over the clock so tests advance time instead of sleeping.
pub struct RequestRate<C: Clock = DefaultClock> {
    limit: u32,
    limiter: Limiter<C>,
    /// This Warden's lease on the fleet's bucket, with `fleet:`.
    lease: Option<Arc<Lease>>,
}

/// The outcome of taking one request from the bucket, with what the `X-RateLimit-*` and
/// `Retry-After` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed {
        limit: u32,
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    Limited {
        limit: u32,
        /// Until one more request would be allowed.
        retry_after: Duration,
    },
    /// The fleet's Redis is unreachable and policy says `on_unavailable: deny`.
    Unavailable,
}

impl RateDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, RateDecision::Allowed { .. })
    }
}

impl RequestRate<DefaultClock> {
    /// A bucket of `rpm` requests per minute on the real clock.
    pub fn per_minute(rpm: NonZeroU32) -> Self {
        Self::with_clock(rpm, real_clock())
    }

    /// A bucket of `rpm` requests per minute shared by the fleet through `lease`.
    pub fn shared(rpm: NonZeroU32, lease: Arc<Lease>) -> Self {
        RequestRate {
            lease: Some(lease),
            ..Self::per_minute(rpm)
        }
    }

    /// Whether this bucket is shared by the fleet.
    pub fn is_shared(&self) -> bool {
        self.lease.is_some()
    }
}

/// The process's one real clock. Creating a quanta clock probes the CPU (`cpuid`) for a usable
/// TSC, about 15 µs each time, which made compiling a 10 000-agent policy spend 145 ms on
/// clocks; a clone is a copy.
fn real_clock() -> DefaultClock {
    static CLOCK: OnceLock<DefaultClock> = OnceLock::new();
    CLOCK.get_or_init(DefaultClock::default).clone()
}

impl<C: Clock> RequestRate<C> {
    /// A bucket of `rpm` requests per minute on `clock`.
    pub fn with_clock(rpm: NonZeroU32, clock: C) -> Self {
        let limiter = RateLimiter::direct_with_clock(Quota::per_minute(rpm), clock)
            .with_middleware::<StateInformationMiddleware>();
        RequestRate {
            limit: rpm.get(),
            limiter,
            lease: None,
        }
    }

    /// The configured requests per minute.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes one request from the bucket if it can (from the fleet's, with `fleet:`).
    pub fn check(&self) -> RateDecision {
        if let Some(lease) = &self.lease {
            let interval = Duration::from_secs(60) / self.limit;
            match lease.take(1, 0) {
                Take::Granted { fleet_left } => {
                    // The local bucket counts what this Warden admitted, so that if Redis drops
                    // under `on_unavailable: local` it carries on from there, not from full.
                    let _ = self.limiter.check();
                    let remaining = u32::try_from(fleet_left)
                        .unwrap_or(u32::MAX)
                        .min(self.limit);
                    return RateDecision::Allowed {
                        limit: self.limit,
                        remaining,
                        reset: interval * (self.limit - remaining),
                    };
                }
                Take::Exhausted { retry_after } => {
                    return RateDecision::Limited {
                        limit: self.limit,
                        retry_after: retry_after.unwrap_or(interval),
                    }
                }
                Take::Unavailable(OnUnavailable::Deny) => return RateDecision::Unavailable,
                Take::Unavailable(OnUnavailable::Allow) => {
                    return RateDecision::Allowed {
                        limit: self.limit,
                        remaining: self.limit,
                        reset: Duration::ZERO,
                    }
                }
                Take::Unavailable(OnUnavailable::Local) => {}
            }
        }
        match self.limiter.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let interval = state.quota().replenish_interval();
                RateDecision::Allowed {
                    limit: self.limit,
                    remaining,
                    reset: interval * (self.limit - remaining),
                }
            }
            Err(not_until) => RateDecision::Limited {
                limit: self.limit,
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }
}

impl<C: Clock> std::fmt::Debug for RequestRate<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRate")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn bursts_to_the_limit_then_refills_evenly() {
        let clock = FakeRelativeClock::default();
        let rate = RequestRate::with_clock(NonZeroU32::new(60).unwrap(), clock.clone());
        for expected_remaining in (0..60).rev() {
            match rate.check() {
                RateDecision::Allowed { remaining, .. } => {
                    assert_eq!(remaining, expected_remaining)
                }
                other => panic!("expected allowed, got {other:?}"),
            }
        }
        match rate.check() {
            RateDecision::Limited { retry_after, limit } => {
                assert_eq!(limit, 60);
                assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::ZERO);
            }
            other => panic!("expected limited, got {other:?}"),
        }
        clock.advance(Duration::from_secs(1));
        assert!(rate.check().is_allowed());
        assert!(!rate.check().is_allowed());
    }

    #[test]
    fn the_local_bucket_counts_what_the_fleet_granted() {
        use crate::fleet::lease::Grant;
        use crate::fleet::{Link, Meter};
        let link = Arc::new(Link::default());
        link.set_healthy(true);
        link.set_on_unavailable(OnUnavailable::Local);
        let lease = link.lease("a:rpm".into(), Meter::Rate, 3);
        let ask = lease.ask().unwrap();
        let grant = Grant {
            granted: 3,
            left: 0,
            retry_after: None,
        };
        lease.granted(ask, grant);
        let rate = RequestRate::shared(NonZeroU32::new(3).unwrap(), lease);
        for _ in 0..3 {
            assert!(rate.check().is_allowed());
        }
        link.set_healthy(false);
        assert!(
            !rate.check().is_allowed(),
            "Redis gone: the local bucket already holds the three admitted"
        );
    }

    #[test]
    fn reset_grows_as_the_bucket_empties() {
        let clock = FakeRelativeClock::default();
        let rate = RequestRate::with_clock(NonZeroU32::new(2).unwrap(), clock);
        let RateDecision::Allowed { reset, .. } = rate.check() else {
            panic!("first request must pass")
        };
        assert_eq!(reset, Duration::from_secs(30));
    }
}
