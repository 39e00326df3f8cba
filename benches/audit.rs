//! Audit costs: what emitting an event costs the hot path, and how fast the shipper chains and
//! writes events to the file sink and to an HTTP collector.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::HeaderValue;
use warden::audit::shipper::Shipper;
use warden::audit::spec::{FileSinkSpec, HttpSinkSpec, SinkSpec};
use warden::audit::{self, AuditEvent, AuditSettings, Auditor, Directory, Tokens};
use warden::clock::SystemClock;
use warden::code::Code;
use warden::config::{self, source, Environment, Snapshot};
use warden::limits::LiveState;
use warden::metrics::Metrics;

const BATCH: u64 = 20_000;

fn metrics() -> Arc<Metrics> {
    match Metrics::new(Arc::default()) {
        Ok(m) => Arc::new(m),
        Err(e) => panic!("metrics: {e}"),
    }
}

/// A small policy for events to point into.
fn snapshot() -> Arc<Snapshot> {
    let text = "version: 1\nproviders:\n  openai: {kind: mock, models: ['gpt-*']}\nagents:\n  support-bot: {models: ['gpt-4o-mini']}\n";
    let live = LiveState::default();
    let env = Environment::offline(&live);
    match config::compile(&source::from_text("bench.yaml", text), &env) {
        Ok(compiled) => Arc::new(compiled.snapshot),
        Err(problems) => panic!("{}", problems[0]),
    }
}

/// The event the proxy builds for an ordinary allowed request.
fn event(snapshot: &Arc<Snapshot>, request_id: &HeaderValue) -> AuditEvent {
    AuditEvent {
        arrived: jiff::Timestamp::now(),
        request_id: Some(request_id.clone()),
        client_request_id: None,
        provider_request_id: None,
        snapshot: Some(Arc::clone(snapshot) as Arc<dyn Directory>),
        agent: Some(0),
        provider: Some(0),
        credential: Some(warden::identity::Credential::ApiKey([7; 32])),
        method: http::Method::POST,
        path: "/v1/chat/completions".to_string(),
        model: Some("gpt-4o-mini".to_string()),
        denied: false,
        code: Code::Ok,
        status: 200,
        latency_ms: 412.734,
        upstream_ms: Some(410.2),
        ttfb_ms: Some(220.01),
        tokens: Some(Tokens {
            cached: None,
            input: 1200,
            output: 340,
        }),
        tokens_source: Some(warden::audit::event::TokensSource::Reported),
        cost_usd: Some(0.000384),
        tunnel: None,
        action: None,
        revocation: None,
        mcp: None,
        user: None,
        translation: None,
        trace: None,
    }
}

fn settings(sink: SinkSpec, dir: &std::path::Path) -> AuditSettings {
    AuditSettings {
        sink,
        spool_dir: dir.join("spool"),
        spool_max_bytes: audit::DEFAULT_SPOOL_MAX_BYTES,
        signing_key_file: None,
        instance: Some("bench".into()),
        checkpoint_every: audit::DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: audit::DEFAULT_CHECKPOINT_INTERVAL,
    }
}

/// A collector that acknowledges every POST with 204, as fast as it can read them.
fn collector() -> String {
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => panic!("bind: {e}"),
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("http://{addr}/ingest"),
        Err(e) => panic!("addr: {e}"),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Runs a shipper over `BATCH` queued events until the queue is empty.
fn ship(c: &mut Criterion, name: &str, sink: SinkSpec) {
    let dir =
        std::env::temp_dir().join(format!("warden-audit-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let settings = settings(sink, &dir);
    let snapshot = snapshot();
    let events: Vec<AuditEvent> = (0..BATCH)
        .map(|i| event(&snapshot, &HeaderValue::from(i)))
        .collect();
    let mut group = c.benchmark_group("audit shipper");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let (tx, rx) = sync_channel(BATCH as usize);
                for e in &events {
                    let _ = tx.try_send(e.clone());
                }
                drop(tx);
                let sink = |_: &str| audit::sink::build(&settings.sink, "bench");
                match Shipper::new(&settings, rx, sink, None, metrics(), Arc::new(SystemClock)) {
                    Ok(shipper) => shipper,
                    Err(e) => panic!("{e}"),
                }
            },
            |shipper| shipper.run(&AtomicBool::new(false)),
            BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn benches(c: &mut Criterion) {
    let (tx, rx) = sync_channel::<AuditEvent>(audit::QUEUE_CAPACITY);
    // Drained the way the shipper drains: polling, never parked on the queue.
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(10));
        while rx.try_recv().is_ok() {}
    });
    let auditor = Auditor::new(tx, metrics());
    let started = Instant::now();
    let snapshot = snapshot();
    let request_id = HeaderValue::from_static("4fab44a8-b7fb-44b2-a9e8-16d93ebe8ac1");
    c.bench_function("audit emit: build an event + non-blocking send", |b| {
        b.iter(|| {
            let mut e = event(&snapshot, &request_id);
            e.latency_ms = started.elapsed().as_secs_f64();
            auditor.emit(black_box(e));
        })
    });

    let dir: PathBuf =
        std::env::temp_dir().join(format!("warden-audit-bench-{}", std::process::id()));
    let file = SinkSpec::File(FileSinkSpec {
        path: dir.join("audit.jsonl").to_string_lossy().into_owned(),
        max_bytes: Some(1 << 40),
        keep: Some(1),
    });
    ship(c, "file sink (chain + write + fsync per batch)", file);
    let http = SinkSpec::Http(HttpSinkSpec {
        url: collector(),
        timeout_secs: Some(10.0),
    });
    std::thread::sleep(Duration::from_millis(50));
    ship(c, "http sink (chain + gzip NDJSON POST)", http);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(audit_benches, benches);
criterion_main!(audit_benches);
