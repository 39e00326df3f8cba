//! Reload cost at scale, on a generated 10 000-agent policy: what a file change costs from
//! disk to a published snapshot (`Reloader::reload`, as the config source runs it), and its
//! parts.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use warden::clock::SystemClock;
use warden::config::reload::{Pinned, Publisher, Reload, Reloader};
use warden::config::{self, source, Environment};
use warden::limits::LiveState;
use warden::metrics::Metrics;

const AGENTS: usize = 10_000;

/// Agents in the shape users write: a key, allowlists and limits each.
fn agents_text() -> String {
    let mut text = String::from(
        "version: 1\nproviders:\n  openai: {base_url: 'http://127.0.0.1:9/v1', models: ['gpt-*', 'o3*', 'text-embedding-*'], auth: none}\n  anthropic: {base_url: 'http://127.0.0.1:9/v1', models: ['claude-*'], auth: none}\nagents:\n",
    );
    for i in 0..AGENTS {
        let hash = hex::encode(warden::identity::api_key::hash_secret(
            format!("key-{i}").as_bytes(),
        ));
        text.push_str(&format!(
            "  agent-{i}:\n    owner: team-{}\n    keys: [{{id: k{i}, sha256: {hash}}}]\n    models: ['gpt-4o-mini', 'claude-sonnet-*']\n    endpoints: ['/v1/chat/completions', '/v1/embeddings']\n    limits: {{requests_per_minute: 600, max_concurrent: 16}}\n",
            i % 50
        ));
    }
    text
}

/// A revocation list of 1% of the agents and keys; `generation` makes each one different.
fn revocations_text(generation: usize) -> String {
    let mut text = format!("version: 1\n# generation {generation}\nrevocations:\n  agents:\n");
    for i in (0..AGENTS).step_by(100) {
        text.push_str(&format!("    - {{id: agent-{i}, reason: rotated}}\n"));
    }
    text.push_str("  keys:\n");
    for i in (50..AGENTS).step_by(100) {
        text.push_str(&format!("    - k{i}\n"));
    }
    text
}

fn write(path: &Path, text: &str) {
    if let Err(e) = std::fs::write(path, text) {
        panic!("cannot write {}: {e}", path.display());
    }
}

fn reloader(path: PathBuf) -> Reloader {
    let metrics = match Metrics::new(Arc::default()) {
        Ok(metrics) => Arc::new(metrics),
        Err(e) => panic!("metrics: {e}"),
    };
    let publisher = Publisher {
        policy: Arc::new(ArcSwapOption::empty()),
        live: Arc::new(LiveState::default()),
        metrics,
        clock: Arc::new(SystemClock),
        tracing: None,
    };
    let pinned = Pinned {
        listen: ([127, 0, 0, 1], 4000).into(),
        admin: ([127, 0, 0, 1], 9464).into(),
        audit: None,
        tracing: None,
    };
    Reloader::new(path, publisher, pinned)
}

fn published(result: Reload) {
    assert!(matches!(result, Reload::Published { .. }), "{result:?}");
}

fn reload(c: &mut Criterion) {
    let agents = agents_text();
    let dir = std::env::temp_dir().join(format!("warden-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    let mut group = c.benchmark_group("reload");
    group.sample_size(20);

    let single = dir.join("single.yaml");
    let whole = format!("{agents}{}", &revocations_text(0)["version: 1\n".len()..]);
    let sources = source::from_text("bench.yaml", &whole);
    let live = LiveState::default();
    let env = Environment::offline(&live);
    let Ok(parsed) = config::parse(Path::new("bench.yaml"), &whole) else {
        panic!("bench policy does not parse");
    };
    group.bench_function("parse: 10 000-agent file", |b| {
        b.iter(|| config::parse(Path::new("bench.yaml"), black_box(&whole)).is_ok())
    });
    group.bench_function("compile parsed: 10 000 agents", |b| {
        let files = [(Path::new("bench.yaml"), &parsed)];
        b.iter(|| config::compile_parsed(&sources.version, black_box(&files), &env).is_ok())
    });

    write(&single, &whole);
    let from_file = reloader(single.clone());
    let mut generation = 0;
    group.bench_function(
        "reload: one 10 000-agent file changed (read + parse + compile + publish)",
        |b| {
            b.iter_batched(
                || {
                    generation += 1;
                    write(&single, &format!("{whole}# generation {generation}\n"));
                },
                |()| published(from_file.reload(false)),
                BatchSize::PerIteration,
            )
        },
    );

    let split = dir.join("split");
    if let Err(e) = std::fs::create_dir_all(&split) {
        panic!("cannot create {}: {e}", split.display());
    }
    write(&split.join("agents.yaml"), &agents);
    write(&split.join("revocations.yaml"), &revocations_text(0));
    let from_dir = reloader(split.clone());
    published(from_dir.reload(false));
    group.bench_function(
        "reload: revocations.yaml changed beside 10 000 unchanged agents",
        |b| {
            b.iter_batched(
                || {
                    generation += 1;
                    write(
                        &split.join("revocations.yaml"),
                        &revocations_text(generation),
                    );
                },
                |()| published(from_dir.reload(false)),
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, reload);
criterion_main!(benches);
