//! How finished spans leave the process: a bounded queue in front of the SDK's batch
//! processor (its own thread), an exporter that counts what was shipped and what was lost, and
//! the HTTP client that posts each batch. Nothing here runs on a request's thread but the
//! queue's `try_send`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;

/// Where the spans' fate is counted (`warden_trace_spans_*`): lock-free counters.
#[derive(Debug, Clone)]
pub struct SpanCounters {
    /// Spans the receiver accepted.
    pub exported: IntCounter,
    /// Spans dropped because the queue was full (the receiver is slow or gone).
    pub queue_full: IntCounter,
    /// Spans in batches the receiver refused or never answered.
    pub export_failed: IntCounter,
}

/// Spans between the end of their request and the answer to their batch, bounded.
#[derive(Debug)]
pub(super) struct Queue {
    held: AtomicUsize,
    capacity: usize,
    counters: SpanCounters,
}

impl Queue {
    pub(super) fn new(capacity: usize, counters: SpanCounters) -> Arc<Self> {
        Arc::new(Queue {
            held: AtomicUsize::new(0),
            capacity,
            counters,
        })
    }

    /// Takes a place for one span, or counts it dropped.
    fn admit(&self) -> bool {
        if self.held.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.held.fetch_sub(1, Ordering::AcqRel);
            self.counters.queue_full.inc();
            return false;
        }
        true
    }

    /// Gives back the places of a batch the receiver answered (or did not).
    fn settle(&self, spans: usize, shipped: bool) {
        self.held.fetch_sub(spans, Ordering::AcqRel);
        let counter = if shipped {
            &self.counters.exported
        } else {
            &self.counters.export_failed
        };
        counter.inc_by(spans as u64);
    }
}

/// The SDK's batch processor behind [`Queue`]: a span the queue has no place for is counted
/// and dropped here, so the batch processor's own channel (as large) never overflows
/// silently.
#[derive(Debug)]
pub(super) struct Gate<P> {
    pub(super) inner: P,
    pub(super) queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for Gate<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting each batch's spans as exported or failed.
#[derive(Debug)]
pub(super) struct Counted<E> {
    pub(super) inner: E,
    pub(super) queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            log::debug!("trace export failed: {e}");
        }
        self.queue.settle(spans, result.is_ok());
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Largest answer read from the receiver (an OTLP answer is a few bytes).
const MAX_ANSWER: u64 = 64 * 1024;

/// Posts export requests with `ureq` (already Warden's client for audit sinks), blocking the
/// batch processor's thread, which is what that thread is for.
#[derive(Debug)]
pub(super) struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub(super) fn new(timeout: Duration) -> Self {
        Client {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .build()
                .into(),
        }
    }
}

#[async_trait]
impl HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, &body[..]);
        let mut response = self.agent.run(request)?;
        let status = response.status();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()?;
        Ok(http::Response::builder()
            .status(status)
            .body(Bytes::from(answer))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> SpanCounters {
        let counter = |name: &str| IntCounter::new(name, "test").unwrap();
        SpanCounters {
            exported: counter("exported"),
            queue_full: counter("queue_full"),
            export_failed: counter("export_failed"),
        }
    }

    #[test]
    fn the_queue_drops_and_counts_what_it_has_no_place_for() {
        let queue = Queue::new(3, counters());
        assert!((0..3).all(|_| queue.admit()));
        assert!(!queue.admit() && !queue.admit());
        assert_eq!(queue.counters.queue_full.get(), 2);
        queue.settle(2, true);
        assert!(queue.admit() && queue.admit() && !queue.admit());
        queue.settle(3, false);
        assert_eq!(queue.counters.exported.get(), 2);
        assert_eq!(queue.counters.export_failed.get(), 3);
        assert_eq!(queue.counters.queue_full.get(), 3);
        assert_eq!(queue.held.load(Ordering::Acquire), 0);
    }
}
