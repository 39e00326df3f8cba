//! Reloading: a change on disk becomes a published snapshot, or a logged and counted refusal.
//!
//! All fallible work (reading, parsing, validating, compiling, resolving hosts) happens before
//! the swap; the swap itself is one `arc-swap` store that cannot fail. Requests in flight keep
//! the snapshot they loaded. A refused change leaves the last good snapshot in force.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};

use super::file::PolicyFile;
use super::snapshot::Snapshot;
use super::source::{self, Sources};
use super::{compile_parsed, parse, Environment, Problem};
use crate::audit::AuditSettings;
use crate::clock::Clock;
use crate::limits::LiveState;
use crate::metrics::{Metrics, ReloadResult};
use crate::policy::revocations::RevokedKind;
use crate::telemetry::{Tracing, TracingSettings};

/// What was set up at start-up and a reload cannot change: the listeners' addresses, the
/// audit shipper and the span exporter.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub audit: Option<AuditSettings>,
    pub tracing: Option<TracingSettings>,
}

/// The shared handles a published snapshot must reach together.
#[derive(Clone)]
pub struct Publisher {
    pub policy: Arc<ArcSwapOption<Snapshot>>,
    pub live: Arc<LiveState>,
    pub metrics: Arc<Metrics>,
    /// When a publish happened, for `warden_config_last_reload_success_timestamp_seconds`.
    pub clock: Arc<dyn Clock>,
    /// The span exporter, which follows each snapshot's sample ratio.
    pub tracing: Option<Arc<Tracing>>,
}

impl Publisher {
    /// Makes `snapshot` the policy in force, then hands its agents' live state to the registry.
    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        self.policy.store(Some(Arc::clone(&snapshot)));
        let teams = snapshot
            .teams
            .iter()
            .map(|(name, limits)| (name.as_str(), limits));
        self.live.publish(
            snapshot
                .agents
                .iter()
                .map(|agent| (agent.id.as_str(), &agent.limits))
                .chain(teams),
        );
        self.live.fleet.set_settings(snapshot.fleet.clone());
        if let (Some(tracing), Some(settings)) = (&self.tracing, &snapshot.tracing) {
            tracing.follow(settings);
        }
        let now = self.clock.now().as_duration().as_secs_f64();
        self.metrics.policy_published(&snapshot.version, now);
    }
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing changed since the policy in force (or since the last refused change).
    Unchanged,
    /// A new snapshot is in force.
    Published { version: String, took: Duration },
    /// The change was refused; the last good snapshot stays.
    Refused,
}

/// Re-reads the policy at `path` and publishes it when it changed and is valid.
pub struct Reloader {
    path: PathBuf,
    publisher: Publisher,
    pinned: Pinned,
    /// Fingerprint of the last refused change, so a bad file is reported once, not every poll.
    last_refused: Mutex<Option<String>>,
    /// Each policy file's text and its parse, so a change to one file (say `revocations.yaml`)
    /// does not re-parse the others: parsing is the slowest step of a reload.
    parsed: Mutex<HashMap<PathBuf, ParsedFile>>,
}

struct ParsedFile {
    text: String,
    policy: Arc<PolicyFile>,
}

impl Reloader {
    pub fn new(path: PathBuf, publisher: Publisher, pinned: Pinned) -> Self {
        Reloader {
            path,
            publisher,
            pinned,
            last_refused: Mutex::new(None),
            parsed: Mutex::new(HashMap::new()),
        }
    }

    /// The policy file or directory being reloaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Files outside the policy sources whose change changes the policy (provider key files).
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        self.publisher
            .policy
            .load()
            .as_ref()
            .map(|s| s.referenced_files.iter().map(|f| f.path.clone()).collect())
            .unwrap_or_default()
    }

    /// Reads the sources and publishes them if they (or a referenced file) changed. `force`
    /// (SIGHUP) recompiles even an unchanged policy: it re-resolves hosts and retries a refused
    /// change.
    ///
    /// Blocking (file reads, DNS): run it off the proxy's threads.
    pub fn reload(&self, force: bool) -> Reload {
        let started = Instant::now();
        let current = self.publisher.policy.load_full();
        let sources = match source::read(&self.path) {
            Ok(sources) => sources,
            Err(problem) => {
                let fingerprint = format!("unreadable: {problem}");
                return self.refuse(fingerprint, force, &[problem]);
            }
        };
        // Each referenced file is read once: to see whether it changed, and to fingerprint
        // a change that is then refused.
        let referenced = current
            .as_ref()
            .map_or(&[][..], |s| s.referenced_files.as_slice());
        let on_disk: Vec<Option<[u8; 32]>> =
            referenced.iter().map(|f| file_digest(&f.path)).collect();
        let referenced_changed = referenced
            .iter()
            .zip(&on_disk)
            .any(|(file, now)| file.digest != *now);
        let unchanged = current
            .as_ref()
            .is_some_and(|s| s.version == sources.version && !referenced_changed);
        if unchanged && !force {
            self.clear_refused();
            return Reload::Unchanged;
        }
        let version = sources.version.clone();
        let fingerprint = format!("{version}+{}", digests_hex(&on_disk));
        let parsed = match self.parse(sources) {
            Ok(parsed) => parsed,
            Err(problems) => return self.refuse(fingerprint, force, &problems),
        };
        let files: Vec<(&Path, &PolicyFile)> = parsed
            .iter()
            .map(|(path, policy)| (path.as_path(), policy.as_ref()))
            .collect();
        let env = Environment::system(&self.publisher.live);
        let compiled = match compile_parsed(&version, &files, &env) {
            Ok(compiled) => compiled,
            Err(problems) => return self.refuse(fingerprint, force, &problems),
        };
        for warning in &compiled.warnings {
            log::warn!("{warning}");
        }
        let mut snapshot = compiled.snapshot;
        self.keep_pinned(&mut snapshot);
        let summary = summary(&snapshot);
        self.publisher.publish(snapshot);
        self.clear_refused();
        self.publisher.metrics.config_reloaded(ReloadResult::Ok);
        let took = started.elapsed();
        log::info!(
            "policy {version} published ({summary}) in {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
        Reload::Published { version, took }
    }

    /// Parses the files whose text changed and reuses the parse of the others, in load order.
    fn parse(&self, sources: Sources) -> Result<Vec<(PathBuf, Arc<PolicyFile>)>, Vec<Problem>> {
        let mut cache = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut previous = std::mem::take(&mut *cache);
        let mut parsed = Vec::with_capacity(sources.files.len());
        let mut problems = Vec::new();
        for file in sources.files {
            let policy = match previous.remove(&file.path) {
                Some(hit) if hit.text == file.text => Ok(hit.policy),
                _ => parse(&file.path, &file.text).map(Arc::new),
            };
            match policy {
                Ok(policy) => {
                    parsed.push((file.path.clone(), Arc::clone(&policy)));
                    let entry = ParsedFile {
                        text: file.text,
                        policy,
                    };
                    cache.insert(file.path, entry);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(parsed)
        } else {
            Err(problems)
        }
    }

    fn refuse(&self, fingerprint: String, force: bool, problems: &[Problem]) -> Reload {
        let mut last = self
            .last_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !force && last.as_deref() == Some(fingerprint.as_str()) {
            return Reload::Unchanged;
        }
        *last = Some(fingerprint);
        for problem in problems {
            log::error!("{problem}");
        }
        let kept = self.publisher.policy.load();
        let kept = kept.as_ref().map_or("none", |s| s.version.as_str());
        log::error!(
            "policy change in {} refused; policy {kept} stays in force",
            self.path.display()
        );
        let metrics = &self.publisher.metrics;
        metrics.config_reloaded(ReloadResult::Error);
        metrics.config_last_reload_successful.set(0);
        Reload::Refused
    }

    fn clear_refused(&self) {
        let mut last = self
            .last_refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.take().is_some() {
            self.publisher.metrics.config_last_reload_successful.set(1);
        }
    }

    /// The listeners stay where they were bound and the audit shipper as it was started; a
    /// policy that changes them needs a restart.
    fn keep_pinned(&self, snapshot: &mut Snapshot) {
        let server = &mut snapshot.server;
        for (field, wanted, bound) in [
            ("listen", &mut server.listen, self.pinned.listen),
            ("admin", &mut server.admin, self.pinned.admin),
        ] {
            if *wanted != bound {
                log::warn!(
                    "server.{field} changed to {wanted}; it stays on {bound} until Warden restarts"
                );
                *wanted = bound;
            }
        }
        if snapshot.audit != self.pinned.audit {
            log::warn!("`audit` changed; the audit trail keeps its start-up settings until Warden restarts");
            snapshot.audit.clone_from(&self.pinned.audit);
        }
        let exporter = match (&self.pinned.tracing, &snapshot.tracing) {
            (None, Some(_)) => Some(None),
            (Some(pinned), Some(wanted)) if !pinned.same_exporter(wanted) => {
                Some(Some(TracingSettings {
                    sample_ratio: wanted.sample_ratio,
                    ..pinned.clone()
                }))
            }
            _ => None,
        };
        if let Some(kept) = exporter {
            log::warn!("`tracing` (endpoint, timeout or service name) is not what Warden started with; the start-up exporter stays until Warden restarts (`sample_ratio` applies now)");
            snapshot.tracing = kept;
        }
    }
}

/// One line describing a snapshot, for the log on every swap.
pub fn summary(snapshot: &Snapshot) -> String {
    let r = &snapshot.revocations;
    format!(
        "{} agents, {} providers, {} keys; revoked: {} agents, {} keys, {} tokens",
        snapshot.agents.len(),
        snapshot.providers.len(),
        snapshot.identity.keys.len(),
        r.count(RevokedKind::Agent),
        r.count(RevokedKind::Credential),
        r.count(RevokedKind::Token)
    )
}

fn file_digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(b).into())
}

/// One digest over the current contents of the referenced files (for the refused-change
/// fingerprint).
fn digests_hex(digests: &[Option<[u8; 32]>]) -> String {
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(digest.unwrap_or_default());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::config::{compile, source};

    #[test]
    fn a_publish_is_stamped_with_the_injected_clock() {
        let live = Arc::new(LiveState::default());
        let metrics = Arc::new(Metrics::new(Arc::clone(&live)).unwrap());
        let at: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let publisher = Publisher {
            policy: Arc::new(ArcSwapOption::empty()),
            live: Arc::clone(&live),
            metrics: Arc::clone(&metrics),
            clock: Arc::new(FixedClock(at)),
            tracing: None,
        };
        let sources = source::from_text("p.yaml", "version: 1\n");
        let compiled =
            compile(&sources, &Environment::offline(&live)).unwrap_or_else(|p| panic!("{}", p[0]));
        publisher.publish(compiled.snapshot);
        assert_eq!(metrics.config_last_success.get(), 1_893_456_000.0);
        assert!(publisher.policy.load().is_some());
    }
}
