"""A mock LLM provider on loopback that speaks the real wire format and records what it got.

OpenAI-shaped JSON and SSE for /v1/chat/completions and /v1/embeddings, Anthropic-shaped JSON
and SSE for /v1/messages. Models steer behaviour so tests can provoke each case:
  slow-*      waits `slow_seconds` before answering (upstream timeout tests)
  error-*     answers 500
  broken-*    starts an SSE stream, sends two events, then drops the connection mid-body
  bad-*       answers 400, in the error shape of the path's API
  *tools*     calls the request's first tool (`{"city": "Paris"}`), or, when the last message
              is a tool result, answers "the tool said: <its text>" (JSON and SSE, both APIs)
  *-cached    reports prompt-cache reads (and, on /v1/messages, writes)
Every answer carries the provider's own `x-request-id` (`req_mock_N`).
It also keeps objects as OpenAI does, in one account (whoever knows an id may use it): the
Responses API (`POST /v1/responses`, JSON or SSE, retrieve, input_items, delete, cancel),
conversations and their items, and files (multipart upload, retrieve, content, delete).
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
        self.objects = {}  # id -> object (responses, conversations, files)
        self.items = {}  # conversation id -> its items
        self.counter = 0
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
                if not provider._object_call(self, rec):
                    provider._answer(self, rec)

            def do_GET(self):
                rec = Recorded("GET", self.path, [(k.lower(), v) for k, v in self.headers.items()], b"")
                with provider.lock:
                    provider.requests.append(rec)
                if not provider._object_call(self, rec):
                    provider._send_json(self, 200, {"object": "list", "data": []})

            def do_DELETE(self):
                rec = Recorded("DELETE", self.path, [(k.lower(), v) for k, v in self.headers.items()],
                               self._read_body())
                with provider.lock:
                    provider.requests.append(rec)
                if not provider._object_call(self, rec):
                    provider._send_json(self, 404, {"error": {"message": "no such route"}})

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

    # === objects (one account: the provider cannot tell agents apart) ===

    def _new_id(self, prefix):
        """Ids unique across mock providers, as a real provider's are across accounts."""
        with self.lock:
            self.counter += 1
            return f"{prefix}{self.port}x{self.counter:04d}"

    def _object_call(self, h, rec):
        """Answers a call on a provider object; False when the path is not one."""
        path = rec.path.split("?")[0]
        parts = path.strip("/").split("/")[1:]  # after "v1"
        if not parts or parts[0] not in ("responses", "conversations", "files"):
            return False
        kind, rest = parts[0], parts[1:]
        if rec.method == "POST" and not rest:
            return self._create(h, rec, kind)
        if kind == "responses" and rest == ["input_tokens"]:
            return self._send_json(h, 200, {"object": "response.input_tokens", "input_tokens": 7}) or True
        obj = self.objects.get(rest[0]) if rest else None
        if obj is None:
            if not rest and rec.method == "GET" and kind == "files":
                data = [o for o in self.objects.values() if o["object"] == "file"]
                return self._send_json(h, 200, {"object": "list", "data": data}) or True
            self._send_json(h, 404, {"error": {"message": f"no such object: {'/'.join(rest)}",
                                               "type": "invalid_request_error"}})
            return True
        sub = rest[1:]
        if rec.method == "DELETE" and not sub:
            del self.objects[rest[0]]
            return self._send_json(h, 200, {"id": rest[0], "object": obj["object"] + ".deleted",
                                            "deleted": True}) or True
        if kind == "responses" and sub == ["input_items"]:
            return self._send_json(h, 200, self._list(obj.get("_input", []))) or True
        if kind == "responses" and sub == ["cancel"]:
            return self._send_json(h, 200, self._public(obj)) or True
        if kind == "files" and sub == ["content"]:
            data = obj["_content"]
            h.send_response(200)
            self._provider_request_id(h)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return True
        if kind == "conversations" and sub and sub[0] == "items":
            items = self.items.setdefault(rest[0], [])
            if rec.method == "POST":
                added = [dict(item, id=self._new_id("msg_")) for item in rec.json().get("items", [])]
                items.extend(added)
                return self._send_json(h, 200, self._list(added)) or True
            if rec.method == "DELETE" and len(sub) == 2:
                items[:] = [i for i in items if i["id"] != sub[1]]
                return self._send_json(h, 200, self._public(obj)) or True
            order = "desc" if "order=desc" in rec.path else "asc"
            return self._send_json(h, 200, self._list(items if order == "asc" else items[::-1])) or True
        return self._send_json(h, 200, self._public(obj)) or True

    def _create(self, h, rec, kind):
        if kind == "files":
            content = rec.body
            obj = {"id": self._new_id("file-"), "object": "file", "bytes": len(content), "created_at": 1,
                   "filename": "upload", "purpose": "user_data", "status": "processed", "_content": content}
            self.objects[obj["id"]] = obj
            return self._send_json(h, 200, self._public(obj)) or True
        req = rec.json() if rec.body else {}
        if kind == "conversations":
            obj = {"id": self._new_id("conv_"), "object": "conversation", "created_at": 1,
                   "metadata": req.get("metadata") or {}}
            self.objects[obj["id"]] = obj
            self.items[obj["id"]] = [dict(i, id=self._new_id("msg_")) for i in req.get("items") or []]
            return self._send_json(h, 200, self._public(obj)) or True
        model = req.get("model", "")
        if model.startswith("error-"):
            return self._send_json(h, 500, {"error": {"message": "provider exploded"}}) or True
        obj = response_object(self._new_id("resp_"), model)
        text = req.get("input") if isinstance(req.get("input"), str) else None
        obj["_input"] = [{"type": "message", "role": "user", "id": self._new_id("msg_"),
                          "content": [{"type": "input_text", "text": text or ""}]}]
        self.objects[obj["id"]] = obj
        if req.get("stream"):
            public = self._public(obj)
            started = dict(public, status="in_progress", output=[], usage=None)
            item = public["output"][0]
            part = item["content"][0]
            empty_item = dict(item, status="in_progress", content=[])
            empty_part = dict(part, text="")
            at = {"item_id": item["id"], "output_index": 0}
            events = [{"type": "response.created", "response": started},
                      {"type": "response.output_item.added", "output_index": 0, "item": empty_item},
                      dict(at, type="response.content_part.added", content_index=0, part=empty_part),
                      dict(at, type="response.output_text.delta", content_index=0, delta=part["text"]),
                      dict(at, type="response.output_text.done", content_index=0, text=part["text"]),
                      dict(at, type="response.content_part.done", content_index=0, part=part),
                      {"type": "response.output_item.done", "output_index": 0, "item": item},
                      {"type": "response.completed", "response": public}]
            for n, event in enumerate(events):
                event["sequence_number"] = n
            self._send_sse(h, events, anthropic=True, done=False)
            return True
        return self._send_json(h, 200, self._public(obj)) or True

    @staticmethod
    def _public(obj):
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    @staticmethod
    def _list(data):
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}

    # === answers ===

    def _answer(self, h, rec):
        try:
            req = rec.json()
        except ValueError:
            return self._send_json(h, 400, {"error": {"message": "bad json"}})
        model = req.get("model", "")
        if model.startswith("slow-"):
            time.sleep(self.slow_seconds)
        anthropic = rec.path.startswith("/v1/messages")
        if model.startswith("error-") or model.startswith("bad-"):
            status, kind = (500, "api_error") if model.startswith("error-") else (400, "invalid_request_error")
            message = "provider exploded" if status == 500 else "bad request from provider"
            if anthropic:
                return self._send_json(h, status, {"type": "error", "error": {"type": kind, "message": message}})
            return self._send_json(h, status, {"error": {"message": message, "type": kind, "param": None, "code": None}})
        if "tools" in model and req.get("tools") and not rec.path.startswith("/v1/embeddings"):
            return self._tool_answer(h, req, anthropic)
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
            # A model named `*-cached` reports prompt-cache reads and writes beside `input_tokens`.
            cache = {"cache_read_input_tokens": 100, "cache_creation_input_tokens": 50} if model.endswith("-cached") else {}
            if req.get("stream"):
                events = anthropic_events(model)
                events[0]["message"]["usage"].update(cache)
                return self._send_sse(h, events, anthropic=True)
            return self._send_json(h, 200, {
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "hello from mock"}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 4, **cache},
            })
        if req.get("stream"):
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return self._send_sse(h, openai_events(model, usage), anthropic=False)
        usage = {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
        if model.endswith("-cached"):
            usage["prompt_tokens_details"] = {"cached_tokens": 8}
        return self._send_json(h, 200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from mock"}, "finish_reason": "stop"}],
            "usage": usage,
        })

    def _tool_answer(self, h, req, anthropic):
        """A model that uses tools: calls the first one, or reports what the tool answered."""
        messages = req.get("messages") or []
        last = messages[-1] if messages else {}
        result = None
        if anthropic and isinstance(last.get("content"), list):
            results = [b for b in last["content"] if b.get("type") == "tool_result"]
            if results:
                content = results[-1].get("content")
                result = content if isinstance(content, str) else "".join(b.get("text", "") for b in content or [])
        elif not anthropic and last.get("role") == "tool":
            content = last.get("content")
            result = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        tool = req["tools"][0]
        name = tool["name"] if anthropic else tool["function"]["name"]
        model = req.get("model", "")
        if anthropic:
            usage = {"input_tokens": 30, "output_tokens": 12}
            if result is not None:
                blocks, stop = [{"type": "text", "text": f"the tool said: {result}"}], "end_turn"
            else:
                blocks = [{"type": "text", "text": "Let me check."},
                          {"type": "tool_use", "id": "toolu_1", "name": name, "input": {"city": "Paris"}}]
                stop = "tool_use"
            if not req.get("stream"):
                return self._send_json(h, 200, {"id": "msg_tools", "type": "message", "role": "assistant", "model": model,
                                                "content": blocks, "stop_reason": stop, "stop_sequence": None,
                                                "usage": usage})
            events = [{"type": "message_start", "message": {"id": "msg_tools", "type": "message", "role": "assistant",
                                                            "model": model, "content": [], "stop_reason": None,
                                                            "stop_sequence": None,
                                                            "usage": {"input_tokens": 30, "output_tokens": 1}}}]
            for i, block in enumerate(blocks):
                if block["type"] == "text":
                    events += [{"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                               {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": block["text"]}}]
                else:
                    events += [{"type": "content_block_start", "index": i, "content_block": dict(block, input={})},
                               {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": '{"city":'}},
                               {"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ' "Paris"}'}}]
                events.append({"type": "content_block_stop", "index": i})
            events += [{"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 12}},
                       {"type": "message_stop"}]
            return self._send_sse(h, events, anthropic=True)
        usage = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
        base = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1, "model": model}
        if result is not None:
            message, finish = {"role": "assistant", "content": f"the tool said: {result}"}, "stop"
        else:
            message = {"role": "assistant", "content": "Let me check.",
                       "tool_calls": [{"id": "call_1", "type": "function",
                                       "function": {"name": name, "arguments": '{"city": "Paris"}'}}]}
            finish = "tool_calls"
        if not req.get("stream"):
            return self._send_json(h, 200, {"id": "chatcmpl-tools", "object": "chat.completion", "created": 1,
                                            "model": model, "usage": usage,
                                            "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
        deltas = [{"role": "assistant", "content": ""}, {"content": message["content"]}]
        if "tool_calls" in message:
            deltas += [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                        "function": {"name": name, "arguments": ""}}]},
                       {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                       {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}]
        events = [dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
        events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        if (req.get("stream_options") or {}).get("include_usage"):
            events.append(dict(base, choices=[], usage=usage))
        return self._send_sse(h, events, anthropic=False)

    def _provider_request_id(self, h):
        with self.lock:
            self.answered += 1
            n = self.answered
        h.send_header("x-request-id", f"req_mock_{n}")
        # The provider account's own limits, as OpenAI reports them on every answer.
        h.send_header("x-ratelimit-limit-requests", "10000")
        h.send_header("x-ratelimit-limit-tokens", "30000000")

    def _send_json(self, h, status, obj):
        data = json.dumps(obj).encode()
        h.send_response(status)
        self._provider_request_id(h)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _send_sse(self, h, events, anthropic, complete=True, done=None):
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
        if done if done is not None else not anthropic:
            self._chunk(h, b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def _chunk(h, data):
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()


def response_object(id, model):
    return {
        "id": id, "object": "response", "created_at": 1, "status": "completed", "model": model,
        "output": [{"type": "message", "id": f"msg_{id}", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "hello from mock", "annotations": []}]}],
        "usage": {"input_tokens": 13, "output_tokens": 5, "total_tokens": 18,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
        "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        "text": {"format": {"type": "text"}},
    }


def openai_events(model, include_usage):
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    for word in ["one ", "two ", "three"]:
        events.append(dict(base, choices=[{"index": 0, "delta": {"content": word}, "finish_reason": None}]))
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        # As OpenAI does: every chunk carries `"usage": null`, then one usage-only chunk.
        events = [dict(event, usage=None) for event in events]
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
