//! The background service that keeps provider addresses fresh for the policy in force.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::server::DEFAULT_RESOLVE_INTERVAL;
use super::Snapshot;
use crate::environment::Lookup;
use crate::providers::resolve::refresh;

/// Re-resolves every provider host of the policy in force, every `server.resolve_interval_secs`.
pub struct Resolver {
    policy: Arc<ArcSwapOption<Snapshot>>,
    lookup: Arc<dyn Lookup>,
}

impl Resolver {
    pub fn new(policy: Arc<ArcSwapOption<Snapshot>>, lookup: Arc<dyn Lookup>) -> Self {
        Resolver { policy, lookup }
    }
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let interval = self
                .policy
                .load()
                .as_ref()
                .map_or(DEFAULT_RESOLVE_INTERVAL, |s| s.server.resolve_interval);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let Some(snapshot) = self.policy.load_full() else {
                continue;
            };
            let lookup = Arc::clone(&self.lookup);
            let round = move || refresh(&snapshot.providers, lookup.as_ref());
            if let Err(e) = tokio::task::spawn_blocking(round).await {
                log::error!("provider host lookup failed: {e}");
            }
        }
    }
}
