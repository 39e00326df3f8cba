//! Unit tests of policy compiling (`compile.rs`).
use std::io;

use super::*;
use crate::config::source;
use crate::environment::{Offline, Secrets, Skipped};
use crate::policy::revocations::RevokedKind;
use crate::policy::AgentStatus;

fn compile_text(text: &str) -> Result<Compiled, Vec<Problem>> {
    let live = LiveState::default();
    compile(
        &source::from_text("p.yaml", text),
        &Environment::offline(&live),
    )
}

#[test]
fn a_policy_beyond_the_default_yaml_budget_loads() {
    // 36 000 agents of 8 YAML nodes each: past serde-saphyr's default of 250 000 nodes.
    let mut text =
        String::from("version: 1\nproviders:\n  m: {kind: mock, models: ['m-*']}\nagents:\n");
    for i in 0..36_000 {
        text.push_str(&format!("  a{i}: {{models: [m-1, m-2, m-3, m-4]}}\n"));
    }
    match compile_text(&text) {
        Ok(compiled) => assert_eq!(compiled.snapshot.agents.len(), 36_000),
        Err(problems) => panic!("{}", problems[0]),
    }
}

#[test]
fn revocations_fold_into_agents_and_keys() {
    let text = "version: 1
providers:
  m: {kind: mock, models: ['m-*']}
agents:
  a:
    keys: [{id: a-1, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]
    models: [m-1]
  b:
    models: [m-1]
    status: suspended
    suspended_until: 2030-01-01T00:00:00Z
revocations:
  agents: [{id: b, reason: compromised}]
  keys: [a-1]
  tokens: [jti-9]
";
    let compiled = compile_text(text).unwrap_or_else(|p| panic!("{}", p[0]));
    let s = compiled.snapshot;
    assert_eq!(s.agents[0].status, AgentStatus::Active);
    assert_eq!(
        s.agents[1].status,
        AgentStatus::Revoked,
        "revocation wins over suspension"
    );
    assert!(s.identity.keys.find(b"test").is_some_and(|k| k.revoked));
    let reason = s.revocations.get(RevokedKind::Agent, "b");
    assert_eq!(reason.map(|r| r.reason.as_str()), Some("compromised"));
    assert!(s.revocations.get(RevokedKind::Token, "jti-9").is_some());
}

/// Hands out one key file and one environment variable; records nothing else.
struct FakeSecrets;

impl Secrets for FakeSecrets {
    fn env_var(&self, name: &str) -> Result<Option<String>, Skipped> {
        Ok((name == "KEY_VAR").then(|| "sk-from-env".to_string()))
    }

    fn file(&self, path: &Path) -> Result<io::Result<Vec<u8>>, Skipped> {
        Ok(if path == Path::new("/keys/b") {
            Ok(b"sk-from-file\n".to_vec())
        } else {
            Err(io::ErrorKind::NotFound.into())
        })
    }
}

#[test]
fn secrets_come_through_the_injected_reader_and_files_read_are_recorded() {
    let text = "version: 1
providers:
  a: {base_url: 'https://127.0.0.1:9/v1', models: [a], api_key_env: KEY_VAR}
  b: {base_url: 'https://127.0.0.1:9/v1', models: [b], api_key_file: /keys/b, auth: x-api-key}
  c: {base_url: 'https://127.0.0.1:9/v1', models: [c], api_key_file: /keys/missing}
";
    let live = LiveState::default();
    let env = Environment {
        live: &live,
        secrets: &FakeSecrets,
        lookup: &Offline,
    };
    let compiled =
        compile(&source::from_text("p.yaml", text), &env).unwrap_or_else(|p| panic!("{}", p[0]));
    let s = &compiled.snapshot;
    let header = |i: usize| match &s.providers[i].auth {
        crate::providers::UpstreamAuth::Bearer(v) | crate::providers::UpstreamAuth::XApiKey(v) => {
            v.to_str().unwrap_or_default().to_string()
        }
        other => format!("{other:?}"),
    };
    assert_eq!(header(0), "Bearer sk-from-env");
    assert_eq!(header(1), "sk-from-file");
    assert!(matches!(
        s.providers[2].auth,
        crate::providers::UpstreamAuth::Missing(_)
    ));
    let read: Vec<_> = s
        .referenced_files
        .iter()
        .map(|f| (f.path.to_str(), f.digest.is_some()))
        .collect();
    assert_eq!(
        read,
        [(Some("/keys/b"), true), (Some("/keys/missing"), false)]
    );
    assert_eq!(
        compiled.warnings.len(),
        1,
        "only the missing key file warns"
    );
}

#[test]
fn offline_compiling_reads_no_secrets_and_reports_none_missing() {
    let text = "version: 1
providers:
  c: {base_url: 'https://127.0.0.1:9/v1', models: [c], api_key_file: /keys/missing}
";
    let live = LiveState::default();
    let compiled = compile(
        &source::from_text("p.yaml", text),
        &Environment::offline(&live),
    )
    .unwrap_or_else(|p| panic!("{}", p[0]));
    assert!(compiled.warnings.is_empty());
    assert!(compiled.snapshot.referenced_files.is_empty());
}

#[test]
fn mcp_grants_are_checked_where_they_are_written() {
    let text = "version: 1
providers:
  crm: {kind: mock, models: [m]}
mcp_servers:
  crm: {url: 'http://127.0.0.1:9/mcp', auth: none}
agents:
  a:
    mcp:
      crm:
        tools:
          refund: {arguments: {amount: {min: 5, max: 1}}, sum_per_day: {note: 3}}
          note: {arguments: {note: {pattern: 'a*', one_of: [1]}}}
      billing: {}
";
    let problems = compile_text(text).err().unwrap();
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = [
        "p.yaml:5:3: error: `crm` (a provider, service or MCP server name)",
        "p.yaml:11:54: error: `max` (1) is below `min` (5)",
        "p.yaml:12:60: error: `one_of` lists strings, numbers or booleans",
        "p.yaml:13:7: error: agent `a` is granted MCP server `billing`, which no `mcp_servers:` entry defines",
    ];
    for expected in expect {
        assert!(
            shown.iter().any(|s| s.starts_with(expected)),
            "{expected}\nin {shown:#?}"
        );
    }
}

#[test]
fn tracing_sends_to_the_traces_path_of_the_endpoint() {
    let settings = |section: &str| {
        let text = format!("version: 1\ntracing: {section}\n");
        match compile_text(&text) {
            Ok(compiled) => compiled.snapshot.tracing,
            Err(problems) => panic!("{}", problems[0]),
        }
    };
    let base = settings("{otlp: {endpoint: 'http://otel:4318/'}}").unwrap();
    assert_eq!(base.traces_url, "http://otel:4318/v1/traces");
    assert_eq!(
        (base.sample_ratio, base.service_name.as_str()),
        (1.0, "warden")
    );
    let full = settings("{otlp: {endpoint: 'https://otel/v1/traces', timeout_secs: 2}, sample_ratio: 0.01, service_name: gw}").unwrap();
    assert_eq!(full.traces_url, "https://otel/v1/traces");
    assert_eq!(full.timeout, std::time::Duration::from_secs(2));
    assert_eq!(
        (full.sample_ratio, full.service_name.as_str()),
        (0.01, "gw")
    );
    assert!(!base.same_exporter(&full));
    let resampled = crate::telemetry::TracingSettings {
        sample_ratio: 0.5,
        ..base.clone()
    };
    assert!(
        base.same_exporter(&resampled),
        "the ratio is not the exporter's"
    );
}

#[test]
fn a_bad_tracing_section_is_refused_at_its_position() {
    for (section, message) in [
        (
            "{otlp: {endpoint: 'otel:4318'}}",
            "`endpoint` must be an http://",
        ),
        (
            "{otlp: {endpoint: 'http://otel'}, sample_ratio: -0.1}",
            "`sample_ratio` must be from 0 to 1",
        ),
        (
            "{otlp: {endpoint: 'http://otel', timeout_secs: 0}}",
            "`timeout_secs` must be a positive",
        ),
        (
            "{otlp: {endpoint: 'http://otel'}, service_name: ' '}",
            "`service_name` must not be empty",
        ),
    ] {
        let text = format!("version: 1\ntracing: {section}\n");
        let problems = compile_text(&text).err().unwrap_or_default();
        let found = problems.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert!(
            found
                .iter()
                .any(|p| p.contains(message) && p.contains("p.yaml:2:")),
            "{section}: {found:?}"
        );
    }
}
