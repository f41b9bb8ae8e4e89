"""Local HTTP fakes (standard library only): an OpenAI-compatible server (which also answers
Anthropic's Messages API), a SageMaker runtime and health-check targets that answer slowly, with
5xx, or not at all. No network leaves the machine."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeBehaviour:
    status: int = 200  # answer this status for every POST (500: the provider is down)
    delay: float = 0.0  # seconds before answering (slow provider)
    head_status: int = 200  # status of HEAD/GET /models (health checks)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    text: str = "hello from the fake"
    # Anthropic Messages API answers (POST .../v1/messages): prompt caching, beside prompt_tokens
    # (Anthropic's `input_tokens` counts neither).
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0  # of cache_creation_input_tokens, to the 1-hour cache
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        b = self.server.behaviour
        time.sleep(b.delay)
        self.server.behaviour.requests.append(
            {
                "method": "HEAD",
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        self._send(b.head_status, {})

    def do_GET(self) -> None:  # noqa: N802
        b = self.server.behaviour
        time.sleep(b.delay)
        self.server.behaviour.requests.append(
            {
                "method": "GET",
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        self._send(b.head_status, {"object": "list", "data": [{"id": "fake-model"}]})

    def do_POST(self) -> None:  # noqa: N802
        b = self.server.behaviour
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {"raw": raw.decode(errors="replace")}
        b.requests.append(
            {
                "method": "POST",
                "path": self.path,
                "json": data,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        )
        time.sleep(b.delay)
        if b.status >= 400:
            self._send(
                b.status, {"error": {"message": f"fake failure {b.status}", "type": "server_error"}}
            )
            return
        self._send(200, self.server.answer(self.path, data))


class _FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, behaviour: FakeBehaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour

    def answer(self, path: str, data: dict[str, Any]) -> Any:
        b = self.behaviour
        usage = {
            "prompt_tokens": b.prompt_tokens,
            "completion_tokens": b.completion_tokens,
            "total_tokens": b.prompt_tokens + b.completion_tokens,
        }
        if path.endswith("/v1/messages"):  # Anthropic Messages API
            return {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": data.get("model"),
                "content": [{"type": "text", "text": b.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": b.prompt_tokens,
                    "output_tokens": b.completion_tokens,
                    "cache_creation_input_tokens": b.cache_creation_input_tokens,
                    "cache_read_input_tokens": b.cache_read_input_tokens,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": b.cache_creation_input_tokens
                        - b.cache_creation_1h_input_tokens,
                        "ephemeral_1h_input_tokens": b.cache_creation_1h_input_tokens,
                    },
                },
            }
        if path.endswith("/invocations"):  # SageMaker runtime, TGI container
            return [{"generated_text": b.text}]
        if path.endswith("/embeddings"):
            inputs = data.get("input") or []
            inputs = inputs if isinstance(inputs, list) else [inputs]
            rows = [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i in range(len(inputs))
            ]
            return {
                "object": "list",
                "data": rows,
                "model": data.get("model"),
                "usage": {"prompt_tokens": b.prompt_tokens, "total_tokens": b.prompt_tokens},
            }
        if path.endswith("/completions") and "chat" not in path:
            return {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": int(time.time()),
                "model": data.get("model"),
                "usage": usage,
                "choices": [
                    {"index": 0, "text": b.text, "finish_reason": "stop", "logprobs": None}
                ],
            }
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model"),
            "usage": usage,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": b.text},
                }
            ],
        }


@dataclass
class RunningFake:
    url: str  # http://127.0.0.1:port
    behaviour: FakeBehaviour

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.behaviour.requests if r["method"] == "POST"]


@contextmanager
def fake_server(behaviour: FakeBehaviour | None = None) -> Iterator[RunningFake]:
    behaviour = behaviour or FakeBehaviour()
    server = _FakeServer(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningFake(url=f"http://127.0.0.1:{server.server_address[1]}", behaviour=behaviour)
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> str:
    """A URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a hung provider): the client must time out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=1)
        for conn in held:
            conn.close()
        sock.close()
