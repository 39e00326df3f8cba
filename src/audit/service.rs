//! The audit shipper as a Pingora background service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::shipper::Shipper;

/// The background service: runs the shipper on a blocking thread. At SIGTERM the shipper
/// switches to draining (see [`Shipper::run`]) and keeps going through the grace period, in
/// which requests still finishing produce events, until the process exits.
pub struct ShipperService {
    shipper: Mutex<Option<Shipper>>,
}

impl ShipperService {
    pub fn new(shipper: Shipper) -> Self {
        ShipperService {
            shipper: Mutex::new(Some(shipper)),
        }
    }
}

#[async_trait]
impl BackgroundService for ShipperService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .shipper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(shipper) = taken else {
            return;
        };
        let draining = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&draining);
        let mut thread = tokio::task::spawn_blocking(move || shipper.run(&flag));
        tokio::select! {
            _ = shutdown.changed() => draining.store(true, Ordering::Release),
            _ = &mut thread => return,
        }
        if let Err(e) = thread.await {
            log::error!("audit shipper failed: {e}");
        }
    }
}
