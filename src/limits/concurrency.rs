//! Concurrent requests per agent: an atomic counter and a guard that gives the slot back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How many requests of one agent are in flight right now.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicU32,
}

/// A held slot; dropping it (at the end of the request, whatever the outcome) releases it.
#[derive(Debug)]
pub struct InFlightGuard {
    in_flight: Arc<InFlight>,
}

impl InFlight {
    /// Takes a slot if fewer than `max` are held.
    pub fn try_acquire(self: &Arc<Self>, max: u32) -> Option<InFlightGuard> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(InFlightGuard {
            in_flight: Arc::clone(self),
        })
    }

    /// Slots held right now.
    pub fn current(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let in_flight = Arc::new(InFlight::default());
        let a = in_flight.try_acquire(2).unwrap();
        let _b = in_flight.try_acquire(2).unwrap();
        assert!(in_flight.try_acquire(2).is_none());
        drop(a);
        assert_eq!(in_flight.current(), 1);
        assert!(in_flight.try_acquire(2).is_some());
    }
}
