"""A log collector on loopback: takes Warden's audit batches (NDJSON, gzip) and OTLP/HTTP logs.

While `up` is False it answers 503, as a collector that is down behind a load balancer would.
Records are kept as parsed JSON objects; `unique()` dedupes them on (instance, seq) as the
SPEC tells receivers to.
"""

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest


class Collector:
    def __init__(self, port=0):
        self.up = True
        self.records = []
        self.otlp_requests = []
        self.attempts = 0
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with collector.lock:
                    collector.attempts += 1
                    up = collector.up
                if not up:
                    self._answer(503)
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/logs":
                    request = json_format.Parse(body, ExportLogsServiceRequest())
                    lines = [r.body.string_value for rl in request.resource_logs
                             for sl in rl.scope_logs for r in sl.log_records]
                    with collector.lock:
                        collector.otlp_requests.append(request)
                else:
                    lines = body.decode().splitlines()
                with collector.lock:
                    collector.records.extend(json.loads(line) for line in lines if line)
                self._answer(200)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def unique(self):
        with self.lock:
            return {(r["instance"], r["seq"]): r for r in self.records}

    def events(self):
        return [r for r in self.unique().values() if r["type"] == "request"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
