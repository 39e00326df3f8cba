//! The fleet: every Warden beside the replicas of an agent, sharing its limits and revocations
//! through Redis (`fleet:` in policy) without putting Redis on a request's path.
//!
//! Limits draw on [`lease::Lease`]s that a background task ([`runtime`]) keeps filled; pushed
//! revocations ([`pushed`]) are held in memory and swapped whole when Redis announces a change.
//! A request reads both from memory; when Redis is unreachable, each lease says so and the
//! policy's [`spec::OnUnavailable`] decides.

pub mod command;
pub mod lease;
pub mod metrics;
pub mod pushed;
pub mod redis;
pub mod runtime;
pub mod spec;

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

pub use lease::{Lease, Link, Meter, Take};
pub use pushed::{AgentRefusal, Pushed};
pub use spec::{FleetSettings, FleetSpec, OnUnavailable};

/// The fleet state of one Warden process: live state, kept across policy reloads.
#[derive(Debug, Default)]
pub struct FleetState {
    /// Between the leases and the task that refills them.
    pub link: Arc<Link>,
    pushed: ArcSwap<Pushed>,
    settings: ArcSwapOption<FleetSettings>,
    /// The background task's connection while Redis is reachable: the few lookups a request
    /// cannot answer from memory (an object another replica created) share it.
    connection: ArcSwapOption<::redis::aio::MultiplexedConnection>,
    pub metrics: metrics::FleetMetrics,
}

impl FleetState {
    /// Fleet state whose leases measure time with `clock`.
    pub fn with_clock(clock: Arc<dyn crate::clock::Clock>) -> Self {
        FleetState {
            link: Arc::new(Link::with_clock(clock)),
            ..FleetState::default()
        }
    }

    /// The pushed revocations in force (one atomic load).
    pub fn pushed(&self) -> arc_swap::Guard<Arc<Pushed>> {
        self.pushed.load()
    }

    /// Replaces the pushed revocations (the background task, after reading Redis).
    pub fn set_pushed(&self, pushed: Pushed) {
        self.metrics.pushed_revocations.set(pushed.len() as i64);
        self.pushed.store(Arc::new(pushed));
    }

    /// The published policy's `fleet:`; `None` without one.
    pub fn settings(&self) -> Option<Arc<FleetSettings>> {
        self.settings.load_full()
    }

    /// Records the published policy's `fleet:` (the background task follows it).
    pub fn set_settings(&self, settings: Option<FleetSettings>) {
        if let Some(settings) = &settings {
            self.link.set_on_unavailable(settings.on_unavailable);
        }
        if self.settings.load().as_deref() != settings.as_ref() {
            self.settings.store(settings.map(Arc::new));
        }
        self.metrics
            .show_mode(self.settings().as_deref(), self.link.healthy());
    }

    /// A handle on the fleet's Redis connection, while it is up.
    pub fn connection(&self) -> Option<::redis::aio::MultiplexedConnection> {
        self.connection.load().as_deref().cloned()
    }

    /// Publishes (or withdraws) the background task's connection.
    pub fn set_connection(&self, connection: Option<::redis::aio::MultiplexedConnection>) {
        self.connection.store(connection.map(Arc::new));
    }

    /// Whether pushed revocations refuse agent `id` of team `team` at `now` (Unix seconds).
    pub fn agent_refusal(&self, id: &str, team: Option<&str>, now: i64) -> Option<AgentRefusal> {
        let pushed = self.pushed.load();
        if pushed.is_empty() {
            return None;
        }
        pushed.agent(id, team, now)
    }
}
