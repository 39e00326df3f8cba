"""An OTLP/HTTP trace receiver on loopback: decodes each `/v1/traces` POST as the real
protobuf `ExportTraceServiceRequest` (the `opentelemetry-proto` package) and keeps the spans.

`up = False` answers 503 (a collector down behind a load balancer); `hang = True` holds each
request without answering (a collector that accepts and never replies).
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)


def value_of(any_value):
    """A decoded `AnyValue` as a Python value."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class Span:
    """One received span, its ids in hex, its attributes as a dict."""

    def __init__(self, span, resource):
        self.raw = span
        self.name = span.name
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_span_id = span.parent_span_id.hex()
        self.kind = span.kind
        self.attributes = {a.key: value_of(a.value) for a in span.attributes}
        self.status_code = span.status.code
        self.status_message = span.status.message
        self.events = {e.name: e for e in span.events}
        self.start_ns = span.start_time_unix_nano
        self.end_ns = span.end_time_unix_nano
        self.resource = resource
        self.trace_state = span.trace_state
        self.flags = span.flags

    def __repr__(self):
        return f"Span({self.name!r}, {self.attributes!r})"


class TraceReceiver:
    def __init__(self):
        self.up = True
        self.hang = False
        self.spans = []
        self.posts = []  # (headers, content type) of each export request
        self.attempts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.attempts += 1
                    up, hang = receiver.up, receiver.hang
                if hang:
                    time.sleep(30)
                    return
                if not up or self.path != "/v1/traces":
                    self._answer(503 if not up else 404, b"")
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received = []
                for rs in request.resource_spans:
                    resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        received.extend(Span(s, resource) for s in ss.spans)
                with receiver.lock:
                    receiver.posts.append(self.headers.get("content-type"))
                    receiver.spans.extend(received)
                self._answer(200, ExportTraceServiceResponse().SerializeToString())

            def _answer(self, status, body):
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def received(self):
        with self.lock:
            return list(self.spans)

    def wait_for(self, predicate, timeout=10):
        """The first received span `predicate` accepts, waiting for it to arrive."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for span in self.received():
                if predicate(span):
                    return span
            time.sleep(0.05)
        raise AssertionError(f"no such span arrived; received: {self.received()!r}")

    def span_for(self, request_id, timeout=10):
        """The span of the request Warden answered with `x-request-id: request_id`."""
        return self.wait_for(lambda s: s.attributes.get("warden.request_id") == request_id, timeout)
