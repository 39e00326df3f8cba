//! The background task between a Warden and the fleet's Redis: it keeps leases filled, gives
//! back idle ones, and applies pushed revocations within a second of their announcement.
//!
//! It follows the published policy's `fleet:` (connecting, reconnecting when the URL changes,
//! idling without one). While Redis is unreachable every lease reports it and the policy's
//! `on_unavailable` decides; the task retries every [`RETRY`] and, once connected, refills every
//! lease at once. Readiness never depends on it: a sidecar must not take its pod down with
//! Redis.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc::Receiver;
use tokio::sync::Notify;

use super::lease::Lease;
use super::pushed;
use super::redis::{self as store, TIMEOUT};
use super::spec::FleetSettings;
use super::FleetState;

/// Between connection attempts while Redis is unreachable.
pub const RETRY: Duration = Duration::from_millis(500);
/// How often the pushed list's version is polled (for an announcement that was missed) and
/// idle leases are given back.
pub const RESYNC: Duration = Duration::from_secs(1);

/// Runs until `stop` resolves.
pub async fn run(fleet: Arc<FleetState>, stop: impl std::future::Future<Output = ()>) {
    let Some(mut asks) = fleet.link.take_receiver() else {
        log::error!("fleet: the lease refill queue is already served");
        return;
    };
    tokio::pin!(stop);
    let mut version = None;
    loop {
        let Some(settings) = fleet.settings() else {
            set_healthy(&fleet, false);
            drain(&mut asks);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RETRY) => continue,
            }
        };
        let session = Session {
            fleet: &fleet,
            settings: &settings,
            version: &mut version,
        };
        tokio::select! {
            () = &mut stop => break,
            why = session.serve(&mut asks) => {
                if fleet.link.healthy() {
                    log::warn!("fleet: {why}; limits follow `on_unavailable: {}` until Redis is back", settings.on_unavailable.as_str());
                }
                fleet.set_connection(None);
                set_healthy(&fleet, false);
                drain(&mut asks);
            }
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
    fleet.set_connection(None);
    if let Some(settings) = fleet.settings() {
        give_back_all(&fleet, &settings).await;
    }
}

/// The fleet task as one of Pingora's background services.
pub struct FleetService {
    pub fleet: Arc<FleetState>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FleetService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        run(Arc::clone(&self.fleet), stop).await;
    }
}

/// Loads the pushed revocations once, at start-up, before traffic is accepted: a Warden
/// started after a revocation refuses from its first request. Gives up after [`TIMEOUT`].
pub async fn load_pushed(fleet: &FleetState, settings: &FleetSettings) -> Result<usize, String> {
    let client = store::client(settings)?;
    let mut con = store::connect(&client).await?;
    let (_, list) = store::read_pushed(&mut con, &fleet.metrics).await?;
    let count = list.len();
    fleet.set_pushed(list);
    Ok(count)
}

struct Session<'a> {
    fleet: &'a FleetState,
    settings: &'a FleetSettings,
    version: &'a mut Option<i64>,
}

impl Session<'_> {
    /// Serves one connection until it fails or the policy's `fleet:` changes; says why.
    async fn serve(self, asks: &mut Receiver<Arc<Lease>>) -> String {
        let client = match store::client(self.settings) {
            Ok(client) => client,
            Err(e) => return e,
        };
        let mut con = match store::connect(&client).await {
            Ok(con) => con,
            Err(e) => return e,
        };
        let announced = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(client, Arc::clone(&announced)));
        let why = self.session(&mut con, asks, &announced).await;
        listener.abort();
        why
    }

    async fn session(
        self,
        con: &mut MultiplexedConnection,
        asks: &mut Receiver<Arc<Lease>>,
        announced: &Notify,
    ) -> String {
        let fleet = self.fleet;
        if let Err(e) = sync(fleet, con, self.version, true).await {
            return e;
        }
        fleet.metrics.connects.fetch_add(1, Ordering::Relaxed);
        set_healthy(fleet, true);
        fleet.set_connection(Some(con.clone()));
        log::info!("fleet: connected to Redis; limits are shared");
        for lease in fleet.link.leases() {
            if let Err(e) = refill(fleet, con, &lease).await {
                return e;
            }
        }
        let mut tick = tokio::time::interval(RESYNC);
        loop {
            tokio::select! {
                lease = asks.recv() => {
                    let Some(lease) = lease else { return "the refill queue closed".into() };
                    if let Err(e) = refill(fleet, con, &lease).await {
                        return e;
                    }
                }
                () = announced.notified() => {
                    if let Err(e) = sync(fleet, con, self.version, true).await {
                        return e;
                    }
                }
                _ = tick.tick() => {
                    if fleet.settings().as_deref() != Some(self.settings) {
                        return "the policy's `fleet:` changed".into();
                    }
                    if let Err(e) = sync(fleet, con, self.version, false).await {
                        return e;
                    }
                    for lease in fleet.link.leases() {
                        if let Some((window, units)) = lease.idle() {
                            if let Err(e) = store::give_back(con, &lease, window, units, &fleet.metrics).await {
                                return e;
                            }
                            fleet.metrics.returns.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}

/// Subscribes to announcements of the pushed list; each one wakes the session. Ends (and
/// so lets the resync poll carry on alone) if the subscription fails.
async fn listen(client: redis::Client, announced: Arc<Notify>) {
    let subscribed = tokio::time::timeout(TIMEOUT, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(pushed::CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub)
    })
    .await;
    let mut pubsub = match subscribed {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => {
            log::warn!(
                "fleet: cannot subscribe to revocation announcements ({}); polling every second",
                store::describe(&e)
            );
            return;
        }
        Err(_) => {
            log::warn!("fleet: cannot subscribe to revocation announcements (timed out); polling every second");
            return;
        }
    };
    let mut messages = pubsub.on_message();
    while messages.next().await.is_some() {
        announced.notify_one();
    }
}

/// Reads the pushed list if its version changed (or always, when `force`). A Redis that lost
/// the list (no version: restarted without persistence) does not lift the revocations this
/// Warden holds.
async fn sync(
    fleet: &FleetState,
    con: &mut MultiplexedConnection,
    known: &mut Option<i64>,
    force: bool,
) -> Result<(), String> {
    if !force {
        let version = store::pushed_version(con, &fleet.metrics).await?;
        if version == *known {
            return Ok(());
        }
    }
    let (version, list) = store::read_pushed(con, &fleet.metrics).await?;
    if version.is_none() && !fleet.pushed().is_empty() {
        if known.is_some() {
            log::error!("fleet: Redis holds no revocation list any more (restarted without persistence?); keeping the {} pushed revocations held here", fleet.pushed().len());
        }
        *known = None;
        return Ok(());
    }
    if **fleet.pushed() != list {
        log::info!("fleet: {} pushed revocations in force", list.len());
        fleet.set_pushed(list);
    }
    *known = version;
    Ok(())
}

async fn refill(
    fleet: &FleetState,
    con: &mut MultiplexedConnection,
    lease: &Arc<Lease>,
) -> Result<(), String> {
    let Some(ask) = lease.ask() else {
        lease.not_refilled();
        return Ok(());
    };
    match store::refill(con, lease, ask, &fleet.metrics).await {
        Ok(grant) => {
            lease.granted(ask, grant);
            fleet.metrics.refills.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            lease.not_refilled();
            Err(e)
        }
    }
}

/// On shutdown: every unspent lease goes back, so a rolling restart strands nothing.
async fn give_back_all(fleet: &FleetState, settings: &FleetSettings) {
    let Ok(client) = store::client(settings) else {
        return;
    };
    let Ok(Ok(mut con)) = tokio::time::timeout(TIMEOUT, store::connect(&client)).await else {
        return;
    };
    for lease in fleet.link.leases() {
        if let Some((window, units)) = lease.release() {
            let _ = store::give_back(&mut con, &lease, window, units, &fleet.metrics).await;
        }
    }
}

fn drain(asks: &mut Receiver<Arc<Lease>>) {
    while let Ok(lease) = asks.try_recv() {
        lease.not_refilled();
    }
}

fn set_healthy(fleet: &FleetState, healthy: bool) {
    fleet.link.set_healthy(healthy);
    fleet
        .metrics
        .show_mode(fleet.settings().as_deref(), healthy);
}
