//! OpenTelemetry traces: one server span per request, continuing the client's W3C trace
//! context, passed on to the provider, exported over OTLP/HTTP off the request's path.
//!
//! The SDK does the span bookkeeping, sampling and batching; Warden adds a bounded, counted
//! queue in front of the batch processor ([`export`]), a live sample ratio (policy reloads
//! change it; the exporter is set up once at start-up, like the audit shipper), and the
//! request span's start and end ([`span`]).

pub mod export;
pub mod span;
pub mod spec;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanKind, TraceId, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingResult, SdkTracer, SdkTracerProvider,
    ShouldSample,
};
use opentelemetry_sdk::Resource;

pub use export::SpanCounters;
pub use span::{Ending, RequestSpan};
pub use spec::{TracingSettings, TracingSpec};

/// Spans waiting for export, at most; beyond it a span is dropped and counted.
pub const QUEUE_CAPACITY: usize = 4096;
/// How often a batch is sent when fewer than a full batch are waiting.
const EXPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Spans per export request.
const BATCH_SIZE: usize = 512;

/// Warden's tracer: started once, when the policy has `tracing:`.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    /// The policy's `sample_ratio` (as `f64` bits), followed on reload.
    ratio: Arc<AtomicU64>,
}

impl Tracing {
    /// Starts the exporter (its batch thread) for `settings`, counting spans in `counters`.
    /// Nothing is sent until a span ends; an unreachable receiver is not an error here.
    pub fn new(settings: &TracingSettings, counters: SpanCounters) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export::Client::new(settings.timeout))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_url.as_str())
            .with_timeout(settings.timeout)
            .build()
            .map_err(|e| format!("tracing: {e}"))?;
        let queue = export::Queue::new(QUEUE_CAPACITY, counters);
        let exporter = export::Counted {
            inner: exporter,
            queue: Arc::clone(&queue),
        };
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE_CAPACITY)
            .with_max_export_batch_size(BATCH_SIZE)
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        let processor = export::Gate {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
            queue,
        };
        let ratio = Arc::new(AtomicU64::new(settings.sample_ratio.to_bits()));
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(LiveRatio(Arc::clone(
                &ratio,
            )))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("warden");
        Ok(Tracing {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            ratio,
        })
    }

    /// Follows a reloaded policy's sample ratio.
    pub fn follow(&self, settings: &TracingSettings) {
        self.ratio
            .store(settings.sample_ratio.to_bits(), Ordering::Relaxed);
    }

    /// The span of a request that has just arrived with `headers`: a child of the client's
    /// span when they carry a valid `traceparent` (sampled as the client decided), else the
    /// root of a new trace (sampled at the ratio).
    pub fn start(&self, headers: &http::HeaderMap) -> RequestSpan {
        let parent = self.propagator.extract(&HeaderExtractor(headers));
        self.begin(&parent)
    }

    /// The span of a request with no trace context to continue (a CONNECT).
    pub fn start_root(&self) -> RequestSpan {
        self.begin(&Context::new())
    }

    fn begin(&self, parent: &Context) -> RequestSpan {
        let span = self
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, parent);
        RequestSpan::new(span)
    }

    /// Sends the spans waiting (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            log::debug!("tracing: flush: {e}");
        }
    }
}

/// The root sampler: the share of new traces the live policy asks for.
#[derive(Debug, Clone)]
struct LiveRatio(Arc<AtomicU64>);

impl ShouldSample for LiveRatio {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let ratio = f64::from_bits(self.0.load(Ordering::Relaxed));
        Sampler::TraceIdRatioBased(ratio)
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}
