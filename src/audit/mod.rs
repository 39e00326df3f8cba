//! The audit trail: every decision becomes an event, chained, signed and shipped off the hot
//! path, and never lost to a collector outage or a restart.
//!
//! The proxy builds an [`AuditEvent`] in its `logging` phase and hands it to the [`Auditor`]
//! with a non-blocking send on a bounded queue. The [`shipper`] (a background service on its
//! own thread) links events into the instance's hash [`chain`], adds signed checkpoints, and
//! writes batches to the [`sink`]; what the sink does not take goes to the on-disk [`spool`]
//! and is shipped, in order, when the sink recovers or after a restart. [`verify`] checks a
//! written log.

pub mod chain;
pub mod event;
pub mod instance;
pub mod keys;
pub mod service;
pub mod settings;
pub mod shipper;
pub mod sink;
pub mod spec;
pub mod spool;
pub mod verify;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

pub use event::{AuditEvent, Directory, Tokens};
pub use settings::AuditSettings;

use crate::metrics::Metrics;

/// Default cap on the spool: 1 GiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// Events the queue holds between the proxy and the shipper.
pub const QUEUE_CAPACITY: usize = 65_536;

/// The proxy's end of the audit queue.
pub struct Auditor {
    queue: SyncSender<AuditEvent>,
    metrics: Arc<Metrics>,
}

impl Auditor {
    pub fn new(queue: SyncSender<AuditEvent>, metrics: Arc<Metrics>) -> Self {
        Auditor { queue, metrics }
    }

    /// Queues an event without waiting. A full queue means the shipper is stalled (its disk
    /// is); the event is then dropped, counted and logged rather than slowing requests.
    pub fn emit(&self, event: AuditEvent) {
        match self.queue.try_send(event) {
            Ok(()) => self.metrics.audit_queue_depth.inc(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.audit_dropped();
            }
        }
    }
}
