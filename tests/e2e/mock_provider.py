"""A mock LLM provider on loopback that speaks the real wire format and records what it got.

OpenAI-shaped JSON and SSE for /v1/chat/completions and /v1/embeddings, Anthropic-shaped JSON
and SSE for /v1/messages. Models steer behaviour so tests can provoke each case:
  slow-*      waits `slow_seconds` before answering (upstream timeout tests)
  error-*     answers 500
  broken-*    starts an SSE stream, sends two events, then drops the connection mid-body
Every answer carries the provider's own `x-request-id` (`req_mock_N`).
Streams send one event every `stream_interval` seconds so tests can see them arrive apart.
"""

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorded:
    def __init__(self, method, path, headers, body, client_port=None):
        self.method = method
        self.client_port = client_port  # which connection it came on
        self.path = path
        self.headers = headers  # list of (lowercase name, value)
        self.body = body
        self.sha256 = hashlib.sha256(body).hexdigest()

    def header(self, name):
        values = [v for k, v in self.headers if k == name.lower()]
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)


class MockProvider:
    def __init__(self, stream_interval=0.15, slow_seconds=3.0, tls=None, idle_timeout=None):
        """`tls`: an `ssl.SSLContext` with the server certificate, to serve HTTPS.
        `idle_timeout`: seconds after which an idle keep-alive connection is closed."""
        self.requests = []
        self.answered = 0
        self.lock = threading.Lock()
        self.stream_interval = stream_interval
        self.slow_seconds = slow_seconds
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = idle_timeout

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self._read_body()
                rec = Recorded("POST", self.path, [(k.lower(), v) for k, v in self.headers.items()], body,
                               client_port=self.client_address[1])
                with provider.lock:
                    provider.requests.append(rec)
                provider._answer(self, rec)

            def do_GET(self):
                rec = Recorded("GET", self.path, [(k.lower(), v) for k, v in self.headers.items()], b"")
                with provider.lock:
                    provider.requests.append(rec)
                provider._send_json(self, 200, {"object": "list", "data": []})

            def _read_body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length", "0"))
                return self.rfile.read(length)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            # The handshake runs in each connection's thread, on its first read.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def last(self):
        with self.lock:
            return self.requests[-1]

    # === answers ===

    def _answer(self, h, rec):
        try:
            req = rec.json()
        except ValueError:
            return self._send_json(h, 400, {"error": {"message": "bad json"}})
        model = req.get("model", "")
        if model.startswith("slow-"):
            time.sleep(self.slow_seconds)
        if model.startswith("error-"):
            return self._send_json(h, 500, {"error": {"message": "provider exploded"}})
        if model.startswith("broken-"):
            events = openai_events(model, include_usage=False)[:2]
            return self._send_sse(h, events, anthropic=False, complete=False)
        if rec.path.startswith("/v1/embeddings"):
            return self._send_json(h, 200, {
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            })
        if rec.path.startswith("/v1/messages"):
            if req.get("stream"):
                return self._send_sse(h, anthropic_events(model), anthropic=True)
            return self._send_json(h, 200, {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "hello from mock"}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 4},
            })
        if req.get("stream"):
            usage = bool(req.get("stream_options", {}).get("include_usage"))
            return self._send_sse(h, openai_events(model, usage), anthropic=False)
        return self._send_json(h, 200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from mock"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18},
        })

    def _provider_request_id(self, h):
        with self.lock:
            self.answered += 1
            n = self.answered
        h.send_header("x-request-id", f"req_mock_{n}")

    def _send_json(self, h, status, obj):
        data = json.dumps(obj).encode()
        h.send_response(status)
        self._provider_request_id(h)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _send_sse(self, h, events, anthropic, complete=True):
        h.send_response(200)
        self._provider_request_id(h)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for event in events:
            text = ""
            if anthropic:
                text += f"event: {event['type']}\n"
            text += f"data: {json.dumps(event)}\n\n"
            self._chunk(h, text.encode())
            time.sleep(self.stream_interval)
        if not complete:
            h.close_connection = True
            return
        if not anthropic:
            self._chunk(h, b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def _chunk(h, data):
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()


def openai_events(model, include_usage):
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for word in ["one ", "two ", "three"]:
        events.append(dict(base, choices=[{"index": 0, "delta": {"content": word}, "finish_reason": None}]))
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        events.append(dict(base, choices=[], usage={"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}))
    return events


def anthropic_events(model):
    return [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                                              "content": [], "stop_reason": None, "stop_sequence": None,
                                              "usage": {"input_tokens": 17, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "two"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 6}},
        {"type": "message_stop"},
    ]
