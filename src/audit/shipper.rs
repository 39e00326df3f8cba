//! The shipper: one thread that chains queued events, adds checkpoints, and delivers batches
//! to the sink — or to the spool when the sink fails, retrying with exponential backoff and
//! jitter until it recovers. Runs as a Pingora background service.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use super::chain::{to_json, ChainState};
use super::event::AuditEvent;
use super::instance;
use super::sink::Sink;
use super::spool::Spool;
use super::AuditSettings;
use crate::clock::Clock;
use crate::metrics::{AuditOutcome, Metrics};

/// Most events chained and delivered as one batch.
const BATCH_MAX: usize = 4096;
/// How long events gather between batches.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// While draining at shutdown, batches are written at once...
const DRAIN_WAIT: Duration = Duration::from_millis(5);
/// ...and signed by a checkpoint after any pause this long.
const DRAIN_CHECKPOINT: Duration = Duration::from_millis(50);
/// Longest the shipper spends shipping the spool before taking new events again.
const SPOOL_SLICE: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Everything the shipper thread owns.
pub struct Shipper {
    queue: Receiver<AuditEvent>,
    chain: ChainState,
    spool: Spool,
    sink: Box<dyn Sink>,
    key: Option<SigningKey>,
    metrics: Arc<Metrics>,
    /// Checkpoint timestamps and the shipper's timers.
    clock: Arc<dyn Clock>,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// While set, the sink is failing: new records go to the spool until this instant.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// The last batch was full: take the next one without sleeping.
    behind: bool,
    /// Records of the oldest spool segment already acknowledged (a segment is shipped in
    /// batches; after a restart it is shipped again from its start: at least once).
    spool_progress: Option<(PathBuf, usize)>,
}

impl Shipper {
    /// Opens the spool and restores the chain (an instance name is made and kept in the spool
    /// directory the first time).
    pub fn new(
        settings: &AuditSettings,
        queue: Receiver<AuditEvent>,
        sink: impl FnOnce(&str) -> Box<dyn Sink>,
        key: Option<SigningKey>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        let spool = Spool::open(&settings.spool_dir, settings.spool_max_bytes).map_err(|e| {
            format!(
                "cannot open audit spool {}: {e}",
                settings.spool_dir.display()
            )
        })?;
        let restored = spool
            .load_chain()
            .map_err(|e| format!("cannot read the audit chain state: {e}"))?;
        let chain = instance::chain_to_continue(restored, settings, clock.as_ref());
        spool
            .save_chain(&chain)
            .map_err(|e| format!("cannot write the audit chain state: {e}"))?;
        metrics.audit_spool_bytes.set(spool.bytes() as i64);
        let sink = sink(&chain.instance);
        let retry_at = (!spool.is_empty()).then(|| clock.instant());
        Ok(Shipper {
            queue,
            chain,
            spool,
            sink,
            key,
            metrics,
            checkpoint_every: settings.checkpoint_every,
            checkpoint_interval: settings.checkpoint_interval,
            since_checkpoint: 0,
            last_checkpoint: clock.instant(),
            clock,
            retry_at,
            backoff: BACKOFF_MIN,
            behind: false,
            spool_progress: None,
        })
    }

    /// The instance name this shipper chains under.
    pub fn instance(&self) -> &str {
        &self.chain.instance
    }

    /// Runs until every sender is gone. Once `draining` is set (SIGTERM), batches are written
    /// within milliseconds and a checkpoint follows every pause, so whatever the process has
    /// handed over when it exits is written and signed.
    pub fn run(mut self, draining: &AtomicBool) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            let (wait, checkpoint_after) = if draining.load(Ordering::Acquire) {
                (DRAIN_WAIT, DRAIN_CHECKPOINT)
            } else {
                (BATCH_WAIT, self.checkpoint_interval)
            };
            let disconnected = self.collect(&mut batch, wait);
            if !batch.is_empty() {
                let records = self.seal(&mut batch);
                self.deliver(records);
            } else if self.since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= checkpoint_after
            {
                let record = self.checkpoint();
                self.deliver(vec![record]);
            }
            self.retry_spool();
            if disconnected {
                if self.since_checkpoint > 0 {
                    let record = self.checkpoint();
                    self.deliver(vec![record]);
                }
                // Last chance before exit: ship the spool while the sink takes it.
                while !self.spool.is_empty()
                    && self.retry_at.is_some_and(|at| at <= self.clock.instant())
                {
                    self.retry_spool();
                }
                return;
            }
        }
    }

    /// Sleeps `wait` (unless the last batch was full), then takes what is queued, up to a
    /// batch. The shipper polls rather than blocking on the queue: a blocked receiver makes
    /// every send a wake-up system call on the request path. Returns true when every sender
    /// is gone and the queue is empty.
    fn collect(&mut self, batch: &mut Vec<AuditEvent>, wait: Duration) -> bool {
        if !self.behind {
            std::thread::sleep(wait);
        }
        let mut disconnected = false;
        while batch.len() < BATCH_MAX {
            match self.queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        self.behind = batch.len() == BATCH_MAX;
        self.metrics.audit_queue_depth.sub(batch.len() as i64);
        disconnected
    }

    /// Chains a batch (and a checkpoint when one is due) into records.
    fn seal(&mut self, batch: &mut Vec<AuditEvent>) -> Vec<String> {
        let mut records = Vec::with_capacity(batch.len() + 1);
        for event in batch.drain(..) {
            records.push(self.chain.seal(|link| to_json(&event.record(link))));
            self.since_checkpoint += 1;
            if self.since_checkpoint >= self.checkpoint_every {
                records.push(self.checkpoint());
            }
        }
        records
    }

    fn checkpoint(&mut self) -> String {
        self.since_checkpoint = 0;
        self.last_checkpoint = self.clock.instant();
        self.chain
            .checkpoint(self.clock.now().to_string(), self.key.as_ref())
    }

    /// Sends records to the sink, or spools them while it is failing (or while older records
    /// still wait in the spool: order is kept).
    fn deliver(&mut self, records: Vec<String>) {
        if let Err(e) = self.spool.save_chain(&self.chain) {
            log::error!("cannot save the audit chain state: {e}");
        }
        if self.retry_at.is_none() && self.spool.is_empty() {
            match self.sink.send(&records) {
                Ok(()) => {
                    self.count(AuditOutcome::Shipped, records.len());
                    return;
                }
                Err(e) => self.failed(&e),
            }
        }
        self.spool_records(&records);
    }

    fn spool_records(&mut self, records: &[String]) {
        let first_seq = self.chain.seq + 1 - records.len() as u64;
        match self.spool.append(first_seq, records) {
            Ok(true) => self.count(AuditOutcome::Spooled, records.len()),
            Ok(false) => {
                log::error!(
                    "audit spool is full ({} bytes): {} records dropped",
                    self.spool.bytes(),
                    records.len()
                );
                self.count(AuditOutcome::Dropped, records.len());
            }
            Err(e) => {
                log::error!(
                    "cannot write the audit spool: {e}; {} records dropped",
                    records.len()
                );
                self.count(AuditOutcome::Dropped, records.len());
            }
        }
        self.metrics
            .audit_spool_bytes
            .set(self.spool.bytes() as i64);
    }

    /// Ships spooled records, oldest first and at most a batch per request, once the backoff
    /// has passed. Each call works for at most [`SPOOL_SLICE`] so new events keep being taken
    /// from the queue (they go to the spool behind the old ones until it is empty).
    fn retry_spool(&mut self) {
        let Some(retry_at) = self.retry_at else {
            return;
        };
        let started = self.clock.instant();
        if started < retry_at {
            return;
        }
        loop {
            if started.elapsed() >= SPOOL_SLICE {
                self.retry_at = Some(self.clock.instant());
                return;
            }
            let (path, records) = match self.spool.oldest() {
                Ok(Some(segment)) => segment,
                Ok(None) => break,
                Err(e) => {
                    log::error!("cannot read the audit spool: {e}");
                    self.failed("spool unreadable");
                    return;
                }
            };
            let done = match &self.spool_progress {
                Some((segment, done)) if *segment == path => *done,
                _ => 0,
            };
            let end = records.len().min(done + BATCH_MAX);
            if done < end {
                if let Err(e) = self.sink.send(&records[done..end]) {
                    self.failed(&e);
                    return;
                }
                self.count(AuditOutcome::Shipped, end - done);
            }
            if end < records.len() {
                self.spool_progress = Some((path, end));
                continue;
            }
            self.spool_progress = None;
            if let Err(e) = self.spool.remove(&path) {
                log::error!(
                    "cannot remove shipped spool segment {}: {e}",
                    path.display()
                );
                self.failed("spool not writable");
                return;
            }
            self.metrics
                .audit_spool_bytes
                .set(self.spool.bytes() as i64);
        }
        log::info!("audit sink recovered; spool shipped");
        self.retry_at = None;
        self.backoff = BACKOFF_MIN;
    }

    /// Schedules the next attempt: exponential backoff with full jitter.
    fn failed(&mut self, why: &str) {
        if self.retry_at.is_none() {
            log::warn!("audit sink failed ({why}); spooling to disk until it recovers");
        }
        let jitter = jitter_fraction();
        let wait = self.backoff.mul_f64(0.5 + jitter / 2.0);
        self.retry_at = Some(self.clock.instant() + wait);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn count(&self, outcome: AuditOutcome, n: usize) {
        self.metrics.audit_records(outcome, n);
    }
}

/// A random number in [0, 1).
fn jitter_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sink::Sink;
    use crate::audit::spec::{FileSinkSpec, SinkSpec};
    use crate::clock::{FixedClock, SystemClock};
    use jiff::Timestamp;
    use std::sync::mpsc::sync_channel;
    use std::sync::Mutex;

    /// Fails while `down`, records batch sizes, sequence numbers and the last record
    /// otherwise.
    #[derive(Clone, Default)]
    struct Flaky(Arc<Mutex<Seen>>);

    #[derive(Default)]
    struct Seen(bool, Vec<usize>, Vec<u64>, String);

    impl Sink for Flaky {
        fn send(&mut self, records: &[String]) -> Result<(), String> {
            let mut state = self.0.lock().unwrap();
            if state.0 {
                return Err("down".into());
            }
            state.1.push(records.len());
            for r in records {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                state.2.push(v["seq"].as_u64().unwrap());
                state.3.clone_from(r);
            }
            Ok(())
        }
    }

    fn event() -> AuditEvent {
        AuditEvent {
            arrived: Timestamp::now(),
            request_id: None,
            client_request_id: None,
            provider_request_id: None,
            snapshot: None,
            agent: None,
            provider: None,
            credential: None,
            method: http::Method::POST,
            path: "/v1/chat/completions".into(),
            model: None,
            denied: true,
            code: crate::code::Code::MissingCredentials,
            status: 401,
            latency_ms: 0.1,
            upstream_ms: None,
            ttfb_ms: None,
            tokens: None,
            tokens_source: None,
            cost_usd: None,
            tunnel: None,
            action: None,
            revocation: None,
            mcp: None,
            user: None,
            translation: None,
            trace: None,
        }
    }

    /// Runs a shipper over `queue` until it is empty and closed, into `sink`.
    fn run_shipper(
        settings: &AuditSettings,
        queue: Receiver<AuditEvent>,
        sink: &Flaky,
        metrics: &Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) {
        let boxed = sink.clone();
        let shipper = Shipper::new(
            settings,
            queue,
            |_| Box::new(boxed),
            None,
            Arc::clone(metrics),
            clock,
        )
        .unwrap();
        shipper.run(&AtomicBool::new(false));
    }

    fn settings(dir: &std::path::Path) -> AuditSettings {
        AuditSettings {
            sink: SinkSpec::File(FileSinkSpec {
                path: String::new(),
                max_bytes: None,
                keep: None,
            }),
            spool_dir: dir.to_path_buf(),
            spool_max_bytes: 1 << 30,
            signing_key_file: None,
            instance: Some("test".into()),
            checkpoint_every: 1_000_000,
            checkpoint_interval: Duration::from_secs(3600),
        }
    }

    #[test]
    fn checkpoints_are_stamped_with_the_injected_clock() {
        let dir = std::env::temp_dir().join(format!("warden-shipper-clock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let at: Timestamp = "2031-02-03T04:05:06Z".parse().unwrap();
        let sink = Flaky::default();
        let (tx, rx) = sync_channel(10);
        tx.try_send(event()).unwrap();
        drop(tx);
        let metrics = Arc::new(Metrics::new(Arc::default()).unwrap());
        run_shipper(
            &settings(&dir),
            rx,
            &sink,
            &metrics,
            Arc::new(FixedClock(at)),
        );
        let last: serde_json::Value = serde_json::from_str(&sink.0.lock().unwrap().3).unwrap();
        assert_eq!(last["type"], "checkpoint");
        assert_eq!(last["ts"], "2031-02-03T04:05:06Z");
        // The configured instance had no chain state: its chain starts at the time in µs.
        let start = at.as_microsecond() as u64;
        assert_eq!(sink.0.lock().unwrap().2, [start, start + 1]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_large_spool_ships_in_order_in_bounded_batches() {
        let dir = std::env::temp_dir().join(format!("warden-shipper-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = settings(&dir);
        let metrics = Arc::new(Metrics::new(Arc::default()).unwrap());
        let sink = Flaky::default();
        sink.0.lock().unwrap().0 = true;

        let (tx, rx) = sync_channel(10_000);
        for _ in 0..9_000 {
            tx.try_send(event()).unwrap();
        }
        drop(tx);
        run_shipper(&settings, rx, &sink, &metrics, Arc::new(SystemClock));
        assert!(sink.0.lock().unwrap().2.is_empty(), "the sink was down");
        assert!(metrics.audit_spool_bytes.get() > 0);

        // Restart with the sink up: the spool ships first, in order, a batch at a time.
        sink.0.lock().unwrap().0 = false;
        let (tx, rx) = sync_channel(10);
        drop(tx);
        run_shipper(&settings, rx, &sink, &metrics, Arc::new(SystemClock));
        let state = sink.0.lock().unwrap();
        assert!(state.1.iter().all(|&n| n <= BATCH_MAX), "{:?}", state.1);
        let first = state.2[0];
        assert!(
            first > 1_700_000_000_000_000,
            "a named chain starts at the time"
        );
        assert_eq!(
            state.2,
            (first..first + 9_001).collect::<Vec<u64>>(),
            "9000 events and a checkpoint"
        );
        assert_eq!(metrics.audit_spool_bytes.get(), 0);
        drop(state);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
