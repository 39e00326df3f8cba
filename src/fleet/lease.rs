//! Leases: slices of a fleet-wide limit that one Warden spends locally.
//!
//! A shared limit is a counter in Redis. A Warden never asks Redis while deciding a request: it
//! spends a [`Lease`] it already holds, and a background task ([`super::runtime`]) tops the
//! lease up before it runs out ([`Lease::ask`] / [`Lease::granted`]) and gives back what an
//! idle Warden holds ([`Lease::idle`]).
//!
//! A lease that runs dry before its refill arrives may go into debt by up to one lease (at
//! least one request): that request is admitted "on credit", and the refill charges the debt to
//! Redis whatever is left. Credit never covers a request larger than what the fleet can still
//! grant: the whole limit until a refill has answered in the window, then what Redis said was
//! left plus this lease; such a request is refused exactly as it would be without a fleet. Once
//! Redis reports nothing left, a dry lease refuses until the window ends (or, for a request
//! rate, until the bucket has room). Hence the bound on what the fleet admits beyond a limit,
//! per window: the credit of every Warden, at most `replicas × (max_lease + the largest
//! request)`, with `max_lease = max(1, limit / 50)` and no request larger than the limit.
//!
//! Leases are sized from the rate this Warden spends at: about [`HORIZON`] of it, never more
//! than `max_lease`, so a quiet Warden holds a small slice and strands little of the limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::spec::{AtomicOnUnavailable, OnUnavailable};
use crate::clock::{Clock, SystemClock};

/// How much of this Warden's recent rate a lease is sized to last.
pub const HORIZON: Duration = Duration::from_secs(2);
/// A lease unused this long is given back.
pub const IDLE: Duration = Duration::from_secs(2);
/// The largest lease, as a fraction of the limit (`1 / MAX_LEASE_DIVISOR`).
pub const MAX_LEASE_DIVISOR: u64 = 50;
/// How often a lease the fleet said was spent asks Redis again (slices given back by other
/// Wardens become usable).
pub const RECHECK: Duration = Duration::from_secs(1);
/// What a request refused by a dry lease whose refill is on its way is told to wait.
pub const PENDING_RETRY: Duration = Duration::from_secs(1);
/// Refill requests waiting for the background task; beyond this a lease asks again later.
const QUEUE: usize = 4096;

/// How a shared counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    /// A GCRA bucket of `limit` per minute, refilled evenly (requests per minute).
    Rate,
    /// A fixed window's counter; its id (minute or day number) is part of the Redis key, which
    /// expires `ttl_secs` after the last write.
    Window { ttl_secs: u64 },
}

/// What taking from a lease decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Taken; `fleet_left` is what Redis said was left at the last refill, plus this lease.
    Granted { fleet_left: u64 },
    /// The fleet has nothing left; `retry_after` when Redis said (a rate), else the window's end.
    Exhausted { retry_after: Option<Duration> },
    /// Redis is unreachable: the policy's `on_unavailable` decides.
    Unavailable(OnUnavailable),
}

/// The link between the leases and the background task that talks to Redis.
#[derive(Debug)]
pub struct Link {
    healthy: AtomicBool,
    on_unavailable: AtomicOnUnavailable,
    asks: tokio::sync::mpsc::Sender<Arc<Lease>>,
    receiver: Mutex<Option<tokio::sync::mpsc::Receiver<Arc<Lease>>>>,
    leases: Mutex<Vec<Weak<Lease>>>,
    /// Requests decided by `on_unavailable` because Redis was unreachable.
    pub fallbacks: AtomicU64,
    /// What lease ages and refill pauses are measured with.
    clock: Arc<dyn Clock>,
}

impl Default for Link {
    fn default() -> Self {
        let (asks, receiver) = tokio::sync::mpsc::channel(QUEUE);
        Link {
            healthy: AtomicBool::new(false),
            on_unavailable: AtomicOnUnavailable::default(),
            asks,
            receiver: Mutex::new(Some(receiver)),
            leases: Mutex::default(),
            fallbacks: AtomicU64::new(0),
            clock: Arc::new(SystemClock),
        }
    }
}

impl Link {
    /// A link whose leases measure time with `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Link {
            clock,
            ..Link::default()
        }
    }

    /// Whether Redis answered the last time it was asked.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Set by the background task as Redis comes and goes.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// What applies while Redis is unreachable (the published policy's `on_unavailable`).
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.on_unavailable.load()
    }

    pub fn set_on_unavailable(&self, mode: OnUnavailable) {
        self.on_unavailable.store(mode);
    }

    /// The refill queue, for the one background task that serves it.
    pub fn take_receiver(&self) -> Option<tokio::sync::mpsc::Receiver<Arc<Lease>>> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Every lease still in use (dropped ones are forgotten on the way).
    pub fn leases(&self) -> Vec<Arc<Lease>> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.retain(|l| l.strong_count() > 0);
        leases.iter().filter_map(Weak::upgrade).collect()
    }

    /// A new lease on the shared counter `key`. A rate's first refill is asked for at once, so
    /// the first request usually finds it filled; a window's waits for its first request (the
    /// lease cannot know the window before).
    pub fn lease(self: &Arc<Self>, key: String, meter: Meter, limit: u64) -> Arc<Lease> {
        let lease = Arc::new(Lease {
            key: key.into_boxed_str(),
            meter,
            limit,
            max: (limit / MAX_LEASE_DIVISOR).max(1),
            state: Mutex::new(State::new(0, self.clock.instant())),
            asked: AtomicBool::new(false),
            link: Arc::clone(self),
        });
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&lease));
        if meter == Meter::Rate {
            lease.ask_refill();
        }
        lease
    }
}

/// This Warden's slice of one shared counter.
#[derive(Debug)]
pub struct Lease {
    /// The counter's Redis key, without prefix or window.
    pub key: Box<str>,
    pub meter: Meter,
    pub limit: u64,
    /// The largest lease (and credit) this Warden takes.
    pub max: u64,
    state: Mutex<State>,
    /// A refill is queued or running.
    asked: AtomicBool,
    link: Arc<Link>,
}

#[derive(Debug)]
struct State {
    /// The window the lease is for (0 for a rate).
    window: i64,
    /// What may still be spent; below zero, what was spent on credit.
    available: i64,
    /// Redis had nothing left: refuse when dry (until this time for a rate; for the rest of
    /// the window otherwise).
    exhausted: Option<Instant>,
    /// What Redis said was left at the last refill.
    fleet_left: u64,
    /// A refill in this window answered: `fleet_left` is known.
    known: bool,
    /// Spent since the last refill was asked for, and since when: the rate leases are sized by.
    spent: u64,
    since: Instant,
    largest: u64,
    last_take: Instant,
    /// When a refill was last asked for (an exhausted lease asks again once a second, in
    /// case other Wardens gave slices back).
    asked_at: Instant,
}

impl State {
    fn new(window: i64, now: Instant) -> Self {
        State {
            window,
            available: 0,
            exhausted: None,
            fleet_left: 0,
            known: false,
            spent: 0,
            since: now,
            largest: 0,
            last_take: now,
            asked_at: now,
        }
    }
}

/// What a refill asks Redis for: charge `debt` (spent on credit), grant up to `want` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub window: i64,
    pub debt: u64,
    pub want: u64,
}

/// What Redis answered to an [`Ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: u64,
    /// Left in the shared counter after the grant.
    pub left: u64,
    /// For a rate with nothing granted: when the bucket has room again.
    pub retry_after: Option<Duration>,
}

fn units(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Lease {
    /// Takes `n` units in `window` (0 for a rate) without waiting on anything but this lease's
    /// own lock; asks for a refill when the lease runs low.
    pub fn take(self: &Arc<Self>, n: u64, window: i64) -> Take {
        if !self.link.healthy() {
            self.link.fallbacks.fetch_add(1, Ordering::Relaxed);
            return Take::Unavailable(self.link.on_unavailable());
        }
        let now = self.link.clock.instant();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.window != window {
            *state = State::new(window, now);
        }
        let need = units(n);
        let exhausted = state
            .exhausted
            .is_some_and(|until| self.meter != Meter::Rate || now < until);
        let credit = units(self.max);
        // What the fleet can still grant this request: all of the limit while no refill has
        // answered in this window, else what Redis said was left plus this lease (a rate's
        // bucket refills as time passes, so only its limit bounds it). A request larger than
        // that is refused, never admitted on credit.
        let grantable = if state.known && self.meter != Meter::Rate {
            units(state.fleet_left).saturating_add(state.available.max(0))
        } else {
            units(self.limit)
        };
        let too_large = need > units(self.limit) || (state.available < need && need > grantable);
        let fits = state.available >= need
            || (!exhausted
                && !too_large
                && (state.available >= 0 || state.available - need >= -credit));
        let take = if fits {
            state.available -= need;
            state.spent = state.spent.saturating_add(n);
            state.largest = state.largest.max(n);
            state.last_take = now;
            let held = u64::try_from(state.available).unwrap_or(0);
            Take::Granted {
                fleet_left: state.fleet_left.saturating_add(held),
            }
        } else if exhausted || need > units(self.limit) {
            Take::Exhausted {
                retry_after: state
                    .exhausted
                    .filter(|_| self.meter == Meter::Rate)
                    .map(|until| until.saturating_duration_since(now)),
            }
        } else {
            // Dry, in debt, its refill on the way: the fleet may well have more.
            Take::Exhausted {
                retry_after: Some(PENDING_RETRY),
            }
        };
        let low = state.available.saturating_mul(2) < units(self.size(&state, now)).max(1);
        let recheck = exhausted && now.saturating_duration_since(state.asked_at) >= RECHECK;
        drop(state);
        if (low && !exhausted) || recheck {
            self.ask_refill();
        }
        take
    }

    /// Gives back `n` units taken in `window` (a reservation settled lower, or released); a
    /// negative `n` charges more (settled higher than reserved).
    pub fn adjust(self: &Arc<Self>, n: i64, window: i64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.window != window {
            return;
        }
        state.available = state.available.saturating_add(n);
        let low = state.available < 0;
        drop(state);
        if low {
            self.ask_refill();
        }
    }

    /// The lease size for the rate spent since the last refill.
    fn size(&self, state: &State, now: Instant) -> u64 {
        // Over a second at least: one request just after a refill is not a burst.
        let elapsed = now
            .saturating_duration_since(state.since)
            .as_secs_f64()
            .max(1.0);
        let rate = state.spent as f64 / elapsed;
        let sized = (rate * HORIZON.as_secs_f64()).ceil() as u64;
        sized.max(state.largest).clamp(1, self.max)
    }

    /// Queues this lease for a refill unless one is already queued.
    fn ask_refill(self: &Arc<Self>) {
        if !self.asked.swap(true, Ordering::AcqRel)
            && self.link.asks.try_send(Arc::clone(self)).is_err()
        {
            self.asked.store(false, Ordering::Release);
        }
    }

    /// What to ask Redis for now (the background task calls this, then [`Lease::granted`]);
    /// nothing for a window lease never used yet.
    pub fn ask(&self) -> Option<Ask> {
        let now = self.link.clock.instant();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.window == 0 && self.meter != Meter::Rate {
            return None;
        }
        let size = self.size(&state, now);
        state.spent = 0;
        state.since = now;
        state.asked_at = now;
        let debt = u64::try_from(-state.available.min(0)).unwrap_or(0);
        let held = u64::try_from(state.available.max(0)).unwrap_or(0);
        Some(Ask {
            window: state.window,
            debt,
            want: size.saturating_sub(held),
        })
    }

    /// Applies Redis' answer to `ask`: the debt is paid and the grant added, if the lease is
    /// still in the window it was asked for.
    pub fn granted(&self, ask: Ask, grant: Grant) {
        self.asked.store(false, Ordering::Release);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.window != ask.window {
            return;
        }
        state.available = state
            .available
            .saturating_add(units(ask.debt))
            .saturating_add(units(grant.granted));
        state.fleet_left = grant.left;
        state.known = true;
        state.exhausted = (grant.granted < ask.want)
            .then(|| self.link.clock.instant() + grant.retry_after.unwrap_or_default());
    }

    /// A refill that was not made (Redis unreachable, or nothing to ask): the lease may ask
    /// again.
    pub fn not_refilled(&self) {
        self.asked.store(false, Ordering::Release);
    }

    /// Empties a lease unused for [`IDLE`], returning what it held in which window; a lease in
    /// debt is queued for a refill (which pays the debt) instead.
    pub fn idle(self: &Arc<Self>) -> Option<(i64, u64)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.available < 0 {
            drop(state);
            self.ask_refill();
            return None;
        }
        if state.last_take.elapsed() < IDLE {
            return None;
        }
        drop(state);
        self.release()
    }

    /// Empties the lease (idle, or shutting down), returning what it held in which window.
    pub fn release(&self) -> Option<(i64, u64)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let held = u64::try_from(state.available)
            .ok()
            .filter(|held| *held > 0)?;
        state.available = 0;
        Some((state.window, held))
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
