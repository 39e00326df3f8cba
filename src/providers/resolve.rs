//! Provider host names → socket addresses, kept fresh off the request path.
//!
//! Pingora's `HttpPeer::new` with a host name does a blocking lookup (and panics when it
//! fails), so requests only ever see an address resolved beforehand: when the policy compiles,
//! and then every `server.resolve_interval_secs` by the config's background resolver ([`refresh`]), because
//! providers sit behind CDNs whose addresses change. A failed lookup keeps the last good address.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use super::{Provider, Upstream};
use crate::environment::Lookup;

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

/// One round over a policy's providers: looks up each provider host named by a host name (IP
/// literals never change) and updates its address. Blocking: run it off the request path.
pub fn refresh(providers: &[Provider], lookup: &dyn Lookup) {
    for provider in providers {
        let Upstream::Http(up) = &provider.upstream else {
            continue;
        };
        if up.host.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        let before = up.addr.get();
        let Ok(looked_up) = lookup.lookup(&up.host, up.port) else {
            continue;
        };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;
    use crate::environment::Skipped;
    use crate::globs::Globs;
    use crate::providers::{HttpUpstream, UpstreamAuth};

    /// Answers `llm.example:8443` with nothing (0) or 192.0.2.N.
    struct FakeLookup(AtomicU8);

    impl Lookup for FakeLookup {
        fn lookup(&self, host: &str, port: u16) -> Result<Option<SocketAddr>, Skipped> {
            assert_eq!((host, port), ("llm.example", 8443));
            Ok(match self.0.load(Ordering::SeqCst) {
                0 => None,
                n => Some(SocketAddr::from(([192, 0, 2, n], port))),
            })
        }
    }

    fn provider(host: &str, port: u16) -> Provider {
        Provider {
            name: host.into(),
            models: Globs::default(),
            upstream: Upstream::Http(HttpUpstream {
                addr: Arc::new(ResolvedAddr::new(None)),
                tls: true,
                host: host.into(),
                port,
                ca: None,
                authority: http::HeaderValue::from_static("x"),
                base_path: String::new(),
            }),
            auth: UpstreamAuth::None,
            headers: Vec::new(),
            identity_header: false,
            api: crate::providers::WireApi::OpenAi,
            serves: crate::providers::Serves::Models,
        }
    }

    #[test]
    fn refresh_follows_address_changes_and_survives_failures() {
        let providers = [provider("llm.example", 8443), provider("127.0.0.1", 9)];
        let Upstream::Http(up) = &providers[0].upstream else {
            unreachable!()
        };
        let lookup = FakeLookup(AtomicU8::new(0));
        refresh(&providers, &lookup);
        assert_eq!(up.addr.get(), None);
        lookup.0.store(1, Ordering::SeqCst);
        refresh(&providers, &lookup);
        assert_eq!(up.addr.get(), "192.0.2.1:8443".parse().ok());
        lookup.0.store(0, Ordering::SeqCst);
        refresh(&providers, &lookup);
        assert_eq!(up.addr.get(), "192.0.2.1:8443".parse().ok());
        lookup.0.store(2, Ordering::SeqCst);
        refresh(&providers, &lookup);
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
