//! What compiling a policy may read outside the policy text: secrets and DNS.
//!
//! Compiling is otherwise pure. These two traits are the only doors to the outside, so each
//! caller says what the outside is: `warden serve` and reloads read real secrets and resolve
//! real hosts; `warden check` (run in CI, where production secrets and hosts are absent) reads
//! and resolves nothing; tests hand in fakes.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// This environment does not read secrets, or does not resolve hosts (`warden check`): the
/// value is neither present nor missing, and nothing is reported about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped;

/// Where provider keys and mounted files (CA bundles) come from.
pub trait Secrets {
    /// The value of environment variable `name` (`Ok(None)` when unset).
    fn env_var(&self, name: &str) -> Result<Option<String>, Skipped>;
    /// The contents of the file at `path`.
    fn file(&self, path: &Path) -> Result<io::Result<Vec<u8>>, Skipped>;
}

/// Host names to socket addresses.
pub trait Lookup: Send + Sync {
    /// The first address of `host:port` (`Ok(None)` when it does not resolve).
    fn lookup(&self, host: &str, port: u16) -> Result<Option<SocketAddr>, Skipped>;
}

/// The process environment and file system.
pub struct SystemSecrets;

impl Secrets for SystemSecrets {
    fn env_var(&self, name: &str) -> Result<Option<String>, Skipped> {
        Ok(std::env::var(name).ok())
    }

    fn file(&self, path: &Path) -> Result<io::Result<Vec<u8>>, Skipped> {
        Ok(std::fs::read(path))
    }
}

/// The system resolver (blocking: call it off the request path).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str, port: u16) -> Result<Option<SocketAddr>, Skipped> {
        Ok((host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next()))
    }
}

/// Reads and resolves nothing: `warden check`.
pub struct Offline;

impl Secrets for Offline {
    fn env_var(&self, _: &str) -> Result<Option<String>, Skipped> {
        Err(Skipped)
    }

    fn file(&self, _: &Path) -> Result<io::Result<Vec<u8>>, Skipped> {
        Err(Skipped)
    }
}

impl Lookup for Offline {
    fn lookup(&self, _: &str, _: u16) -> Result<Option<SocketAddr>, Skipped> {
        Err(Skipped)
    }
}
