//! Provider host names → socket addresses, kept fresh off the request path.
//!
//! Pingora's `HttpPeer::new` with a host name does a blocking lookup (and panics when it
//! fails), so requests only ever see an address resolved beforehand: when the policy compiles,
//! and then every `server.resolve_interval_secs` by the [`Resolver`] background service, because
//! providers sit behind CDNs whose addresses change. A failed lookup keeps the last good address.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwapOption, Guard};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::snapshot::Upstream;
use super::Snapshot;

/// Default period between two lookups of every provider host.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// The address a provider host resolves to right now; shared by the snapshot and the resolver.
#[derive(Debug, Default)]
pub struct ResolvedAddr {
    addr: ArcSwapOption<SocketAddr>,
}

impl ResolvedAddr {
    pub fn new(addr: Option<SocketAddr>) -> Self {
        ResolvedAddr {
            addr: ArcSwapOption::new(addr.map(Arc::new)),
        }
    }

    /// The current address; `None` until a lookup has succeeded.
    pub fn get(&self) -> Option<SocketAddr> {
        let guard: Guard<_> = self.addr.load();
        guard.as_deref().copied()
    }

    /// Records a lookup's result: a new address replaces the old one, a failure keeps it.
    /// Returns whether the address changed.
    pub fn update(&self, looked_up: Option<SocketAddr>) -> bool {
        match looked_up {
            Some(addr) if self.get() != Some(addr) => {
                self.addr.store(Some(Arc::new(addr)));
                true
            }
            _ => false,
        }
    }
}

/// Looks up `host:port` with the system resolver (blocking), keeping the first address.
pub fn lookup(host: &str, port: u16) -> Option<SocketAddr> {
    (host, port).to_socket_addrs().ok()?.next()
}

/// Re-resolves every provider host of the policy in force, on a period.
pub struct Resolver {
    policy: Arc<ArcSwapOption<Snapshot>>,
    lookup: fn(&str, u16) -> Option<SocketAddr>,
}

impl Resolver {
    pub fn new(policy: Arc<ArcSwapOption<Snapshot>>) -> Self {
        Resolver { policy, lookup }
    }
}

/// One round over a policy: looks up each provider host named by a host name (IP literals
/// never change) and updates its address.
fn refresh(snapshot: &Snapshot, lookup: fn(&str, u16) -> Option<SocketAddr>) {
    for provider in &snapshot.providers {
        let Upstream::Http(up) = &provider.upstream else {
            continue;
        };
        if up.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let before = up.addr.get();
        let looked_up = lookup(&up.host, up.port);
        if up.addr.update(looked_up) {
            log::info!(
                "provider `{}`: {} now resolves to {} (was {})",
                provider.name,
                up.host,
                up.addr
                    .get()
                    .map_or_else(String::new, |a| a.ip().to_string()),
                before.map_or_else(|| "unresolved".to_string(), |a| a.ip().to_string()),
            );
        } else if looked_up.is_none() {
            log::warn!(
                "provider `{}`: cannot resolve {}; keeping {}",
                provider.name,
                up.host,
                before.map_or_else(|| "no address".to_string(), |a| a.ip().to_string()),
            );
        }
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
            let lookup = self.lookup;
            if let Err(e) = tokio::task::spawn_blocking(move || refresh(&snapshot, lookup)).await {
                log::error!("provider host lookup failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;
    use crate::config::{compile, Environment};
    use crate::limits::LiveState;

    /// What the fake resolver answers: 0 nothing, else 192.0.2.N.
    static ANSWER: AtomicU8 = AtomicU8::new(0);

    fn fake_lookup(host: &str, port: u16) -> Option<SocketAddr> {
        assert_eq!((host, port), ("llm.example", 8443));
        match ANSWER.load(Ordering::SeqCst) {
            0 => None,
            n => Some(SocketAddr::from(([192, 0, 2, n], port))),
        }
    }

    #[test]
    fn refresh_follows_address_changes_and_survives_failures() {
        let policy = "version: 1\nproviders:\n  p: {base_url: \"https://llm.example:8443/v1\", models: [\"*\"], auth: none}\n  ip: {base_url: \"http://127.0.0.1:9/v1\", models: [\"x\"], auth: none}\n";
        let sources = crate::config::source::from_text("policy.yaml", policy);
        let live = LiveState::default();
        let env = Environment {
            live: &live,
            resolve_hosts: false,
            read_secrets: false,
        };
        let snapshot = compile(&sources, &env)
            .map_err(|p| format!("{p:?}"))
            .unwrap()
            .snapshot;
        let Upstream::Http(up) = &snapshot.providers[0].upstream else {
            panic!("http provider expected");
        };
        assert_eq!(up.addr.get(), None);
        ANSWER.store(1, Ordering::SeqCst);
        refresh(&snapshot, fake_lookup);
        assert_eq!(up.addr.get(), "192.0.2.1:8443".parse().ok());
        ANSWER.store(0, Ordering::SeqCst);
        refresh(&snapshot, fake_lookup);
        assert_eq!(up.addr.get(), "192.0.2.1:8443".parse().ok());
        ANSWER.store(2, Ordering::SeqCst);
        refresh(&snapshot, fake_lookup);
        assert_eq!(up.addr.get(), "192.0.2.2:8443".parse().ok());
    }

    #[test]
    fn a_failed_lookup_keeps_the_last_good_address() {
        let cell = ResolvedAddr::new(None);
        assert_eq!(cell.get(), None);
        let a: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:443".parse().unwrap();
        assert!(cell.update(Some(a)));
        assert!(!cell.update(Some(a)));
        assert!(!cell.update(None));
        assert_eq!(cell.get(), Some(a));
        assert!(cell.update(Some(b)));
        assert_eq!(cell.get(), Some(b));
    }
}
