//! Every metric Warden exports, declared in one place with its help text.
//!
//! Labels come only from policy (agent ids, provider names), bounded model names and closed
//! enums ([`Code`], [`ReloadResult`], [`AuditOutcome`]) — never tokens, keys or request ids.
//! The registry sits below the domains that count into it (audit, config) and above the live
//! counters it reads at scrape time; the admin port only serves [`Metrics::render`].

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus::{
    CounterVec, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::code::Code;
use crate::limits::{AgentCounters, LiveState};

/// `result` label of `warden_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// A changed policy was published.
    Ok,
    /// A changed policy was refused whole; the last good one stays.
    Error,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
}

/// `outcome` label of `warden_audit_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// Acknowledged by the sink.
    Shipped,
    /// Written to the on-disk spool (counted again when shipped).
    Spooled,
    /// Lost: queue or spool full.
    Dropped,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Shipped => "shipped",
            AuditOutcome::Spooled => "spooled",
            AuditOutcome::Dropped => "dropped",
        }
    }
}

/// Buckets for whole-request latency: from sub-millisecond refusals to multi-minute generations.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Buckets for Warden's own time per request: from tens of microseconds (an allowed request's
/// decision) to the rare request that waits on a slow client body.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

/// Warden's metrics and the registry they are exported from.
pub struct Metrics {
    registry: Registry,
    /// Counts of requests no agent was identified for (`agent=""`); an identified agent's
    /// counts live in its live state (`warden_requests_total`, `warden_tokens_total`).
    pub anonymous: Arc<AgentCounters>,
    /// Where identified agents' counts live.
    live: Arc<LiveState>,
    /// `warden_request_duration_seconds{code}`: from the request head to the last response byte.
    pub request_duration: HistogramVec,
    request_duration_by_code: [OnceLock<Histogram>; Code::ALL.len()],
    upstream_duration_by_provider: Handles<Histogram>,
    /// `warden_upstream_duration_seconds{provider}`: from asking for a provider connection to the
    /// end of its response (or its failure).
    pub upstream_duration: HistogramVec,
    /// `warden_overhead_seconds`: a request's time in Warden, excluding the provider's.
    pub overhead: Histogram,
    /// `warden_config_reloads_total{result="ok|error"}`: policy changes applied or refused.
    pub config_reloads: IntCounterVec,
    /// `warden_config_info{version}`: 1 for the version of the policy in force.
    pub config_info: IntGaugeVec,
    /// `warden_config_last_reload_successful`: 0 while the newest policy on disk is refused.
    pub config_last_reload_successful: IntGauge,
    /// `warden_config_last_reload_success_timestamp_seconds`: when the policy in force was
    /// published (Unix time).
    pub config_last_success: Gauge,
    /// `warden_audit_events_total{outcome="shipped|spooled|dropped"}`: audit records (events and
    /// checkpoints) by what happened to them; a spooled record counts again when shipped.
    pub audit_events: IntCounterVec,
    /// `warden_audit_queue_depth`: events waiting between the proxy and the shipper.
    pub audit_queue_depth: IntGauge,
    /// `warden_audit_spool_bytes`: size of the on-disk spool.
    pub audit_spool_bytes: IntGauge,
    /// `warden_budget_rejections_total{agent,code}`: requests refused by a token budget.
    pub budget_rejections: IntCounterVec,
    /// `warden_spend_usd_total{agent}`: what agents' tokens cost by the policy's pricing.
    pub spend: CounterVec,
    /// `warden_tunnels_total{agent,code}`: CONNECT tunnels opened (`ok`) or refused.
    pub tunnels: IntCounterVec,
    /// `warden_tunnel_bytes_total{direction}`: bytes through plain tunnels, `up` (agent to
    /// destination) and `down`.
    pub tunnel_bytes: IntCounterVec,
    /// `warden_mcp_calls_total{agent,server,tool,code}`: MCP tool calls, allowed or refused;
    /// `tool` is the policy entry that admitted it (bounded by policy), or `other`.
    pub mcp_calls: IntCounterVec,
    /// `warden_trace_spans_exported_total`: spans the OTLP receiver accepted.
    pub trace_spans_exported: IntCounter,
    /// `warden_trace_spans_dropped_total{reason="queue_full|export_failed"}`: spans lost.
    pub trace_spans_dropped: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric; per-agent counts are read from `live` at scrape time.
    pub fn new(live: Arc<LiveState>) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let anonymous = Arc::new(AgentCounters::default());
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "warden_request_duration_seconds",
                "Time from the request head to the end of the response, by outcome code.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["code"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "warden_upstream_duration_seconds",
                "Time from asking for a connection to the provider to the end of its response (or its failure), by provider.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "warden_overhead_seconds",
                "Time a request spends in Warden, excluding the provider's: the whole request for a refusal, the whole request less `warden_upstream_duration_seconds` for a forwarded one.",
            )
            .buckets(OVERHEAD_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let config_reloads = IntCounterVec::new(
            Opts::new("warden_config_reloads_total", "Policy changes seen after start-up, by result: `ok` (published) or `error` (refused whole; the last good policy stays)."),
            &["result"],
        )?;
        for result in [ReloadResult::Ok, ReloadResult::Error] {
            config_reloads.with_label_values(&[result.as_str()]);
        }
        let config_info = IntGaugeVec::new(
            Opts::new(
                "warden_config_info",
                "1 for the policy in force; `version` is the SHA-256 of its source files.",
            ),
            &["version"],
        )?;
        let config_last_reload_successful = IntGauge::new(
            "warden_config_last_reload_successful",
            "1 if the newest policy on disk is the one in force, 0 while it is refused.",
        )?;
        let config_last_success = Gauge::new(
            "warden_config_last_reload_success_timestamp_seconds",
            "Unix time at which the policy in force was published.",
        )?;
        let audit_events = IntCounterVec::new(
            Opts::new("warden_audit_events_total", "Audit records (events and signed checkpoints) by outcome: `shipped` (acknowledged by the sink), `spooled` (written to the on-disk spool; counted again when shipped), `dropped` (lost: queue or spool full)."),
            &["outcome"],
        )?;
        for outcome in [
            AuditOutcome::Shipped,
            AuditOutcome::Spooled,
            AuditOutcome::Dropped,
        ] {
            audit_events.with_label_values(&[outcome.as_str()]);
        }
        let audit_queue_depth = IntGauge::new(
            "warden_audit_queue_depth",
            "Audit events queued between the proxy and the shipper.",
        )?;
        let audit_spool_bytes = IntGauge::new(
            "warden_audit_spool_bytes",
            "Bytes of audit records waiting in the on-disk spool.",
        )?;
        let budget_rejections = IntCounterVec::new(
            Opts::new(
                "warden_budget_rejections_total",
                "Requests refused because their estimated tokens did not fit the agent's token budget, by agent and code.",
            ),
            &["agent", "code"],
        )?;
        registry.register(Box::new(budget_rejections.clone()))?;
        let spend = CounterVec::new(
            Opts::new(
                "warden_spend_usd_total",
                "USD spent by agents' LLM tokens, by the policy's pricing (reported usage, or the estimate of a stream cut short).",
            ),
            &["agent"],
        )?;
        registry.register(Box::new(spend.clone()))?;
        let tunnels = IntCounterVec::new(
            Opts::new(
                "warden_tunnels_total",
                "CONNECT tunnels (HTTPS_PROXY mode), by agent and outcome: `ok` (opened: intercepted or plain) or the refusal's code.",
            ),
            &["agent", "code"],
        )?;
        registry.register(Box::new(tunnels.clone()))?;
        let tunnel_bytes = IntCounterVec::new(
            Opts::new(
                "warden_tunnel_bytes_total",
                "Bytes through plain CONNECT tunnels, by direction: `up` (agent to destination) or `down`.",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(tunnel_bytes.clone()))?;
        let mcp_calls = IntCounterVec::new(
            Opts::new(
                "warden_mcp_calls_total",
                "MCP tool calls (`tools/call`), by agent, server, tool (the policy entry that names it, or `other` for a tool the agent is not given) and outcome code.",
            ),
            &["agent", "server", "tool", "code"],
        )?;
        registry.register(Box::new(mcp_calls.clone()))?;
        let trace_spans_exported = IntCounter::new(
            "warden_trace_spans_exported_total",
            "Request spans the OTLP receiver accepted (`tracing:`).",
        )?;
        registry.register(Box::new(trace_spans_exported.clone()))?;
        let trace_spans_dropped = IntCounterVec::new(
            Opts::new("warden_trace_spans_dropped_total", "Request spans lost, by reason: `queue_full` (the export queue was full) or `export_failed` (the receiver refused the batch or did not answer)."),
            &["reason"],
        )?;
        for reason in ["queue_full", "export_failed"] {
            trace_spans_dropped.with_label_values(&[reason]);
        }
        registry.register(Box::new(trace_spans_dropped.clone()))?;
        registry.register(Box::new(audit_events.clone()))?;
        registry.register(Box::new(audit_queue_depth.clone()))?;
        registry.register(Box::new(audit_spool_bytes.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_info.clone()))?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        registry.register(Box::new(config_last_success.clone()))?;
        Ok(Metrics {
            registry,
            live,
            anonymous,
            request_duration,
            upstream_duration,
            overhead,
            request_duration_by_code: std::array::from_fn(|_| OnceLock::new()),
            upstream_duration_by_provider: Handles::default(),
            config_reloads,
            config_info,
            config_last_reload_successful,
            config_last_success,
            audit_events,
            audit_queue_depth,
            audit_spool_bytes,
            budget_rejections,
            spend,
            tunnels,
            tunnel_bytes,
            mcp_calls,
            trace_spans_exported,
            trace_spans_dropped,
        })
    }

    /// `warden_request_duration_seconds{code}`, looked up without hashing once seen.
    pub fn request_duration(&self, code: Code) -> &Histogram {
        self.request_duration_by_code[code.index()]
            .get_or_init(|| self.request_duration.with_label_values(&[code.as_str()]))
    }

    /// `warden_upstream_duration_seconds{provider}`, looked up without hashing once seen.
    pub fn upstream_duration(&self, provider: &str) -> Histogram {
        self.upstream_duration_by_provider.get(provider, || {
            self.upstream_duration.with_label_values(&[provider])
        })
    }

    /// Counts `n` audit records by what happened to them.
    pub fn audit_records(&self, outcome: AuditOutcome, n: usize) {
        self.audit_events
            .with_label_values(&[outcome.as_str()])
            .inc_by(n as u64);
    }

    /// Counts a request refused by `agent`'s token budget (`agent` is a policy id: bounded).
    pub fn budget_rejected(&self, agent: &str, code: Code) {
        self.budget_rejections
            .with_label_values(&[agent, code.as_str()])
            .inc();
    }

    /// Counts one MCP tool call of `agent` on `server`, under its policy entry `tool`.
    pub fn mcp_call(&self, agent: &str, server: &str, tool: &str, code: Code) {
        self.mcp_calls
            .with_label_values(&[agent, server, tool, code.as_str()])
            .inc();
    }

    /// Adds `micro_usd` to `agent`'s spend.
    pub fn spent(&self, agent: &str, micro_usd: u64) {
        self.spend
            .with_label_values(&[agent])
            .inc_by(micro_usd as f64 / 1_000_000.0);
    }

    /// Counts a CONNECT tunnel (`agent` is a policy id or empty) and a plain tunnel's bytes.
    pub fn tunnel(&self, agent: &str, code: Code, bytes: Option<(u64, u64)>) {
        self.tunnels
            .with_label_values(&[agent, code.as_str()])
            .inc();
        if let Some((up, down)) = bytes {
            self.tunnel_bytes.with_label_values(&["up"]).inc_by(up);
            self.tunnel_bytes.with_label_values(&["down"]).inc_by(down);
        }
    }

    /// Counts a policy change seen after start-up.
    pub fn config_reloaded(&self, result: ReloadResult) {
        self.config_reloads
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// Counts an audit event lost before the shipper saw it, and says so loudly (once a
    /// thousand, so a stalled disk does not also flood the log).
    pub fn audit_dropped(&self) {
        let dropped = self
            .audit_events
            .with_label_values(&[AuditOutcome::Dropped.as_str()]);
        if dropped.get().is_multiple_of(1000) {
            log::error!(
                "audit queue full: events are being dropped ({} so far)",
                dropped.get() + 1
            );
        }
        dropped.inc();
    }

    /// Records that the policy `version` is now in force.
    pub fn policy_published(&self, version: &str, at_unix_secs: f64) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
        self.config_last_reload_successful.set(1);
        self.config_last_success.set(at_unix_secs);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        write_agent_counters(&mut out, &self.live, &self.anonymous);
        let fleet = &self.live.fleet;
        let mut text = String::new();
        let fallbacks = fleet
            .link
            .fallbacks
            .load(std::sync::atomic::Ordering::Relaxed);
        fleet.metrics.render(&mut text, fallbacks);
        out.extend_from_slice(text.as_bytes());
        out
    }
}

const REQUESTS_HELP: &str = "Requests handled, by agent, model, provider and outcome code (a SPEC error code, `ok`, or `upstream_4xx`/`upstream_5xx` for provider errors). An agent's combinations past 128 are counted under model `_other`.";
const TOKENS_HELP: &str = "LLM tokens reported by providers (JSON `usage` or SSE usage events), by agent, model and direction (`input` or `output`).";

/// Writes every agent's [`AgentCounters`] as `warden_requests_total` and `warden_tokens_total`
/// in the text exposition format, straight from the counters: with 10 000 agents, building
/// Prometheus' intermediate structures first cost several MB per scrape.
fn write_agent_counters(out: &mut Vec<u8>, live: &LiveState, anonymous: &AgentCounters) {
    let mut requests = Vec::new();
    let mut tokens = Vec::new();
    let mut add = |agent: &str, counters: &AgentCounters| {
        counters.for_each(|series| {
            sample(
                &mut requests,
                "warden_requests_total",
                &[
                    ("agent", agent),
                    ("code", series.code.as_str()),
                    ("model", &series.model),
                    ("provider", &series.provider),
                ],
                series.requests,
            );
        });
        counters.for_each_model_tokens(|model, input, output| {
            for (direction, n) in [("input", input), ("output", output)] {
                sample(
                    &mut tokens,
                    "warden_tokens_total",
                    &[("agent", agent), ("direction", direction), ("model", model)],
                    n,
                );
            }
        });
    };
    add("", anonymous);
    live.for_each_counters(add);
    for (name, help, lines) in [
        ("warden_requests_total", REQUESTS_HELP, requests),
        ("warden_tokens_total", TOKENS_HELP, tokens),
    ] {
        if !lines.is_empty() {
            out.extend_from_slice(
                format!("# HELP {name} {help}\n# TYPE {name} counter\n").as_bytes(),
            );
            out.extend_from_slice(&lines);
        }
    }
}

/// One sample line; `labels` in byte order of their names, as Prometheus' own vectors write
/// them.
fn sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: u64) {
    out.extend_from_slice(name.as_bytes());
    for (i, (label, text)) in labels.iter().enumerate() {
        out.push(if i == 0 { b'{' } else { b',' });
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(b"=\"");
        for byte in text.bytes() {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\n' => out.extend_from_slice(b"\\n"),
                _ => out.push(byte),
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(format!("}} {value}\n").as_bytes());
}

/// Metric handles by one label value, for labels with few values (codes, providers): a request
/// finds its handle with a short scan of an immutable list instead of hashing label values under
/// the vector's lock; a new value copies the list once.
struct Handles<T> {
    by_value: ArcSwap<Vec<(Box<str>, T)>>,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            by_value: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

impl<T: Clone> Handles<T> {
    fn get(&self, value: &str, make: impl FnOnce() -> T) -> T {
        if let Some((_, handle)) = self.by_value.load().iter().find(|(v, _)| **v == *value) {
            return handle.clone();
        }
        let handle = make();
        self.by_value.rcu(|list| {
            let mut list = Vec::clone(list);
            if !list.iter().any(|(v, _)| **v == *value) {
                list.push((value.into(), handle.clone()));
            }
            list
        });
        handle
    }
}
