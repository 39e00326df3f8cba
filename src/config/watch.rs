//! The config source: a background service that notices policy changes and asks the
//! [`Reloader`] to apply them.
//!
//! Three triggers, because each alone misses cases seen in the field:
//! - a file-system watcher (`notify`) on the directories that hold the policy and the files it
//!   references — fast (milliseconds), and it sees a Kubernetes ConfigMap update, which swaps a
//!   `..data` symlink in the mounted directory rather than writing the files;
//! - polling every [`POLL_INTERVAL`] as a fallback, for file systems without events and for a
//!   watcher that stopped seeing a file (a directory replaced by rename keeps the old inode);
//! - SIGHUP, which recompiles even an unchanged policy (re-resolving hosts).
//!
//! Bursts of events (an editor's save, a ConfigMap swap) are debounced into one reload; the
//! reloader compares content hashes, so a trigger that changed nothing costs only the reads.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use super::reload::{Reload, Reloader};

/// How often the policy is re-read when no event arrives. Half the 1 s reload deadline, so a
/// change the watcher misses is still live in time; reading and hashing even a 3 MB policy
/// costs a few milliseconds.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Quiet time that ends a burst of file events.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// A steady stream of events still reloads this often.
const DEBOUNCE_MAX: Duration = Duration::from_millis(200);

/// Watches, polls and listens for SIGHUP; runs reloads one at a time.
pub struct ConfigSource {
    reloader: Arc<Reloader>,
    /// Use the file-system watcher (polling always runs).
    watch: bool,
}

impl ConfigSource {
    pub fn new(reloader: Arc<Reloader>, watch: bool) -> Self {
        ConfigSource { reloader, watch }
    }

    async fn reload(&self, force: bool) {
        let reloader = Arc::clone(&self.reloader);
        match tokio::task::spawn_blocking(move || reloader.reload(force)).await {
            Ok(Reload::Unchanged) if force => log::info!("SIGHUP: policy unchanged"),
            Ok(_) => {}
            Err(e) => log::error!("policy reload failed: {e}"),
        }
    }
}

#[async_trait]
impl BackgroundService for ConfigSource {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let events = Arc::new(Notify::new());
        let mut watched = self.watch.then(|| Watched::new(&self.reloader, &events));
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                log::error!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let force = tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = recv(&mut hangup) => true,
                () = events.notified() => {
                    debounce(&events).await;
                    false
                }
                _ = poll.tick() => false,
            };
            self.reload(force).await;
            if let Some(watched) = &mut watched {
                watched.follow(&self.reloader);
            }
        }
    }
}

async fn recv(hangup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match hangup {
        Some(hangup) => hangup.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until events stop for [`DEBOUNCE`], or at most [`DEBOUNCE_MAX`].
async fn debounce(events: &Notify) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    while tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + DEBOUNCE),
        events.notified(),
    )
    .await
    .is_ok()
    {}
}

/// The file-system watcher and the paths it covers.
struct Watched {
    watcher: Option<RecommendedWatcher>,
    /// Directories watched (non-recursively) right now, with their inode: a directory replaced
    /// by another under the same name needs a new watch.
    dirs: Vec<(PathBuf, u64)>,
    events: Arc<Notify>,
}

impl Watched {
    fn new(reloader: &Reloader, events: &Arc<Notify>) -> Self {
        let mut watched = Watched {
            watcher: None,
            dirs: Vec::new(),
            events: Arc::clone(events),
        };
        watched.follow(reloader);
        watched
    }

    /// (Re)builds the watcher when the set of directories to watch changed: the policy's own
    /// directory, its parent (to see the directory itself replaced), and the directories of
    /// referenced files.
    fn follow(&mut self, reloader: &Reloader) {
        let targets = Targets::of(reloader);
        let dirs = targets.dirs();
        if self.watcher.is_some() && dirs == self.dirs {
            return;
        }
        let events = Arc::clone(&self.events);
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if is_change(&event.kind) && event.paths.iter().any(|p| targets.covers(p)) =>
            {
                events.notify_one();
            }
            Ok(_) => {}
            Err(e) => log::warn!("file watcher: {e}; polling continues"),
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut watcher = match RecommendedWatcher::new(handler, config) {
            Ok(watcher) => watcher,
            Err(e) => {
                log::warn!("cannot start the file watcher ({e}); polling every {POLL_INTERVAL:?}");
                self.dirs = dirs;
                return;
            }
        };
        for (dir, _) in &dirs {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                log::warn!("cannot watch {} ({e}); polling covers it", dir.display());
            }
        }
        self.watcher = Some(watcher);
        self.dirs = dirs;
    }
}

/// Reading a file produces `open` events; only writes, creates, removes, renames and attribute
/// changes can change the policy (and reacting to reads would loop on our own polling).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The paths whose change may change the policy.
struct Targets {
    /// The policy path as given (a file or a directory).
    policy: PathBuf,
    policy_is_dir: bool,
    referenced: Vec<PathBuf>,
}

impl Targets {
    fn of(reloader: &Reloader) -> Self {
        let policy = absolute(reloader.path());
        Targets {
            policy_is_dir: policy.is_dir(),
            policy,
            referenced: reloader
                .referenced_files()
                .iter()
                .map(|p| absolute(p))
                .collect(),
        }
    }

    fn dirs(&self) -> Vec<(PathBuf, u64)> {
        let mut dirs = Vec::new();
        if self.policy_is_dir {
            dirs.push(self.policy.clone());
        }
        let parents = std::iter::once(&self.policy).chain(&self.referenced);
        dirs.extend(parents.filter_map(|p| p.parent().map(Path::to_path_buf)));
        dirs.sort();
        dirs.dedup();
        dirs.into_iter()
            .filter_map(|d| {
                let meta = std::fs::metadata(&d).ok().filter(|m| m.is_dir())?;
                Some((d, meta.ino()))
            })
            .collect()
    }

    /// Whether an event on `path` may concern the policy: the policy path itself, anything in
    /// the policy directory, a referenced file, or a hidden `..data`-style entry next to one
    /// (how Kubernetes swaps ConfigMap and Secret volumes).
    fn covers(&self, path: &Path) -> bool {
        if path == self.policy || (self.policy_is_dir && path.parent() == Some(&self.policy)) {
            return true;
        }
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".."));
        std::iter::once(&self.policy)
            .chain(&self.referenced)
            .any(|t| path == t || (hidden && path.parent() == t.parent()))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(policy_is_dir: bool) -> Targets {
        Targets {
            policy: PathBuf::from("/etc/warden"),
            policy_is_dir,
            referenced: vec![PathBuf::from("/run/secrets/openai/key")],
        }
    }

    #[test]
    fn a_directory_policy_covers_its_entries_and_configmap_swaps() {
        let t = targets(true);
        assert!(t.covers(Path::new("/etc/warden/agents.yaml")));
        assert!(t.covers(Path::new("/etc/warden/..data")));
        assert!(t.covers(Path::new("/etc/warden")));
        assert!(t.covers(Path::new("/run/secrets/openai/key")));
        assert!(t.covers(Path::new("/run/secrets/openai/..data")));
        assert!(!t.covers(Path::new("/run/secrets/openai/other")));
        assert!(!t.covers(Path::new("/etc/other.yaml")));
    }

    #[test]
    fn a_file_policy_covers_itself_and_hidden_siblings_only() {
        let t = Targets {
            policy: PathBuf::from("/etc/warden/warden.yaml"),
            policy_is_dir: false,
            referenced: Vec::new(),
        };
        assert!(t.covers(Path::new("/etc/warden/warden.yaml")));
        assert!(t.covers(Path::new("/etc/warden/..data_tmp")));
        assert!(!t.covers(Path::new("/etc/warden/.warden.yaml.swp")));
        assert!(!t.covers(Path::new("/etc/warden/notes.txt")));
    }

    #[test]
    fn reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Any));
    }
}
