//! The fleet's health as Prometheus metrics: Redis round trips, lease refills and returns,
//! decisions made without Redis, and the mode in force.
//!
//! Kept as atomics here and written in the text format at scrape time, like the per-agent
//! counters: nothing to register, nothing that can fail to build.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use super::spec::FleetSettings;

/// Upper bounds (seconds) of the round-trip histogram's buckets.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Counters and gauges of the fleet link.
#[derive(Debug, Default)]
pub struct FleetMetrics {
    round_trips_ok: AtomicU64,
    round_trips_error: AtomicU64,
    round_trip_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    /// Lease refills Redis answered.
    pub refills: AtomicU64,
    /// Idle leases given back.
    pub returns: AtomicU64,
    /// Connections (re)established to Redis.
    pub connects: AtomicU64,
    /// Entries in the pushed revocation list.
    pub pushed_revocations: AtomicI64Gauge,
    mode: AtomicU8,
}

/// A gauge that is set, not counted.
#[derive(Debug, Default)]
pub struct AtomicI64Gauge(AtomicI64);

impl AtomicI64Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

const MODES: [&str; 5] = ["off", "shared", "local", "deny", "allow"];

impl FleetMetrics {
    /// Counts one Redis command (or pipeline) and how long it took.
    pub fn round_trip(&self, took: Duration, ok: bool) {
        let counter = if ok {
            &self.round_trips_ok
        } else {
            &self.round_trips_error
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.round_trip_micros.fetch_add(micros, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the mode in force: `off` without `fleet:`, `shared` while Redis answers, else
    /// the policy's `on_unavailable`.
    pub fn show_mode(&self, settings: Option<&FleetSettings>, healthy: bool) {
        let mode = match (settings, healthy) {
            (None, _) => "off",
            (Some(_), true) => "shared",
            (Some(s), false) => s.on_unavailable.as_str(),
        };
        let index = MODES.iter().position(|m| *m == mode).unwrap_or(0);
        self.mode
            .store(u8::try_from(index).unwrap_or(0), Ordering::Relaxed);
    }

    /// Appends the fleet metrics in the text exposition format; `fallbacks` is the count of
    /// limit checks decided by `on_unavailable`.
    pub fn render(&self, out: &mut String, fallbacks: u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ok = get(&self.round_trips_ok);
        let error = get(&self.round_trips_error);
        let _ = writeln!(out, "# HELP warden_fleet_redis_round_trips_total Commands sent to the fleet's Redis, by result.\n# TYPE warden_fleet_redis_round_trips_total counter\nwarden_fleet_redis_round_trips_total{{result=\"ok\"}} {ok}\nwarden_fleet_redis_round_trips_total{{result=\"error\"}} {error}");
        let _ = writeln!(out, "# HELP warden_fleet_redis_round_trip_seconds Time of a command to the fleet's Redis (never on a request's path).\n# TYPE warden_fleet_redis_round_trip_seconds histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += get(count);
            let _ = writeln!(
                out,
                "warden_fleet_redis_round_trip_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = ok + error;
        let sum = get(&self.round_trip_micros) as f64 / 1e6;
        let _ = writeln!(out, "warden_fleet_redis_round_trip_seconds_bucket{{le=\"+Inf\"}} {total}\nwarden_fleet_redis_round_trip_seconds_sum {sum}\nwarden_fleet_redis_round_trip_seconds_count {total}");
        for (name, help, value) in [
            (
                "warden_fleet_lease_refills_total",
                "Lease refills granted by Redis (a slice of a shared limit taken, debt paid).",
                get(&self.refills),
            ),
            (
                "warden_fleet_lease_returns_total",
                "Idle leases given back to Redis.",
                get(&self.returns),
            ),
            (
                "warden_fleet_redis_connects_total",
                "Connections made to the fleet's Redis.",
                get(&self.connects),
            ),
            (
                "warden_fleet_fallbacks_total",
                "Limit checks decided by `on_unavailable` because Redis was unreachable.",
                fallbacks,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let pushed = self.pushed_revocations.0.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP warden_fleet_pushed_revocations Revocations and suspensions pushed through Redis, in force here.\n# TYPE warden_fleet_pushed_revocations gauge\nwarden_fleet_pushed_revocations {pushed}");
        let _ = writeln!(out, "# HELP warden_fleet_mode 1 for the mode shared limits are in: off (no fleet), shared (Redis answers), or the on_unavailable mode while it does not.\n# TYPE warden_fleet_mode gauge");
        let current = usize::from(self.mode.load(Ordering::Relaxed));
        for (i, mode) in MODES.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_fleet_mode{{mode=\"{mode}\"}} {}",
                u8::from(i == current)
            );
        }
    }
}
