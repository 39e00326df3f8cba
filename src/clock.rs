//! The time decisions and records are made at, injected so tests can set it.
//!
//! Credential expiry, suspensions, audit timestamps and checkpoints, and the "policy published
//! at" metric all read the time through a [`Clock`] handed in by whoever builds them, the way
//! the rate limiter takes its own clock: a test sets the time instead of sleeping or racing the
//! wall clock.

use std::fmt;
use std::time::Instant;

use jiff::Timestamp;

/// A source of wall-clock and monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time: what expiry and suspension are judged at and what records say.
    fn now(&self) -> Timestamp;
    /// Monotonic time: what durations and timers are measured with.
    fn instant(&self) -> Instant;
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A wall clock stopped at one time (the monotonic clock still runs, so timeouts work), for
/// tests that check what a record or decision says about time.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}
