//! A request's server span: started when the request arrives, ended once when it is recorded
//! (a stream's when the stream ends), with the attributes only the end knows.

use std::time::{Instant, SystemTime};

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// One request's span. A span the sampler dropped still has ids: the upstream and the audit
/// record name them, so a client's trace links to both either way.
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    /// The span's start by both clocks: events are placed by `Instant`s the request took.
    wall: SystemTime,
    started: Instant,
}

/// What a span says once its request has ended.
pub struct Ending {
    /// The span's name (`chat gpt-4o`, `tools/call search`, `POST /v1/verify`, …).
    pub name: String,
    pub attributes: Vec<KeyValue>,
    /// The refusal or failure code, for an error span.
    pub error: Option<&'static str>,
    /// When the first byte of the answer's body passed (a stream's first token).
    pub first_chunk: Option<Instant>,
}

impl RequestSpan {
    pub(super) fn new(span: opentelemetry_sdk::trace::Span) -> Self {
        RequestSpan {
            span,
            wall: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// Whether the span is sampled: only then are its attributes worth computing.
    pub fn is_recording(&self) -> bool {
        self.span.is_recording()
    }

    /// The trace and span ids (bytes, big-endian as written in hex).
    pub fn ids(&self) -> ([u8; 16], [u8; 8]) {
        let context = self.span.span_context();
        (context.trace_id().to_bytes(), context.span_id().to_bytes())
    }

    /// Writes the W3C `traceparent` (and `tracestate`) naming this span as the parent.
    pub fn propagate(&self, injector: &mut dyn Injector) {
        let context = Context::new().with_remote_span_context(self.span.span_context().clone());
        TraceContextPropagator::new().inject_context(&context, injector);
    }

    /// Ends the span now, with `ending`'s name, attributes and status.
    pub fn end(mut self, ending: Ending) {
        if !self.span.is_recording() {
            return;
        }
        self.span.update_name(ending.name);
        self.span.set_attributes(ending.attributes);
        if let Some(first) = ending.first_chunk {
            let since = first.saturating_duration_since(self.started);
            self.span.set_attribute(KeyValue::new(
                "gen_ai.server.time_to_first_token",
                since.as_secs_f64(),
            ));
            self.span
                .add_event_with_timestamp("first_token", self.wall + since, Vec::new());
        }
        match ending.error {
            Some(code) => {
                self.span.set_attribute(KeyValue::new("error.type", code));
                self.span.set_status(Status::error(code));
            }
            None => self.span.set_status(Status::Ok),
        }
        self.span.end();
    }
}
