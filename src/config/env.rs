//! What compiling a policy may reach outside its text, as `config` hands it to the domains.

use std::cell::RefCell;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::snapshot::ReferencedFile;
use crate::environment::{Lookup, Offline, Secrets, Skipped, SystemLookup, SystemSecrets};
use crate::limits::LiveState;

/// What compiling may touch outside the policy text.
pub struct Environment<'a> {
    /// Live limit state to bind agents to (shared across reloads).
    pub live: &'a LiveState,
    /// Provider keys and mounted files.
    pub secrets: &'a dyn Secrets,
    /// Provider host names.
    pub lookup: &'a dyn Lookup,
}

impl<'a> Environment<'a> {
    /// Real secrets and DNS: `warden serve` and reloads.
    pub fn system(live: &'a LiveState) -> Self {
        Environment {
            live,
            secrets: &SystemSecrets,
            lookup: &SystemLookup,
        }
    }

    /// Neither secrets nor DNS: `warden check` (CI has no production secrets) and tests.
    pub fn offline(live: &'a LiveState) -> Self {
        Environment {
            live,
            secrets: &Offline,
            lookup: &Offline,
        }
    }
}

/// Records every file read through it: a change to a provider's key file or CA file is a
/// policy change too, so the reloader watches them.
pub(super) struct RecordingSecrets<'a> {
    pub(super) inner: &'a dyn Secrets,
    pub(super) read: RefCell<Vec<ReferencedFile>>,
}

impl Secrets for RecordingSecrets<'_> {
    fn env_var(&self, name: &str) -> Result<Option<String>, Skipped> {
        self.inner.env_var(name)
    }

    fn file(&self, path: &Path) -> Result<io::Result<Vec<u8>>, Skipped> {
        let bytes = self.inner.file(path)?;
        self.read.borrow_mut().push(ReferencedFile {
            path: path.to_path_buf(),
            digest: bytes.as_deref().ok().map(|b| Sha256::digest(b).into()),
        });
        Ok(bytes)
    }
}
