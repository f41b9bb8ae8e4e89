"""One instance of the local stand-in for SageMaker hosting: a model-server process.

Speaks the SageMaker container contract: `GET /ping` (200 once loaded, 503 while warming up) and
`POST /invocations`. Also `POST /invocations-async` (the stand-in for SageMaker's async queue:
202 at once, the result file is written when done) and, for llm_text models, OpenAI-compatible
`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`, so LiteLLM reaches it
like any OpenAI-compatible server.

Async results go only to `--async-dir`, named by the InferenceId (`async_paths`): the port is
open to every local user, so a request must not choose which files the server writes. For the
same reason it reads inputs (`input_location`, the async InputLocation) only under its
`--read-root` directories (resolved, so symlinks and '..' cannot lead out; none: no local path),
checked again on the file actually opened (`read_under_roots`), so a symlink swapped in after the
check cannot lead out either.

With `--log-file`, its log (one access line per request) goes to that file, rotated at
`--log-max-bytes` with `--log-backups` old files kept, so it stays bounded; stderr then carries
only what bypasses logging (a crash's traceback).

Handlers are **reference stand-ins** (`standin_handlers.py`, which documents the invocation body
and every response schema): they read the real input and compute cheap, honest answers with
Pillow and the standard library, in the response schema of the real model's container, marked
`"stand_in": true`. The LLM stand-ins (TGI / OpenAI shapes, below) keep those exact shapes and are
marked by the X-Radiant-Stand-In header only. Add one with `@stand_in("specialty_or_category")`.
No ML libraries; Pillow is imported only by the handlers that decode images, so a model server
still starts in ~0.1 s.

    python -m activities.backends.local_model_server --model-id yolov8m \\
        --category vision_detection --specialty object_detection --port-file /tmp/p
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import logging.handlers
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from activities.backends.standin_handlers import (  # noqa: F401 - re-exported for callers
    STAND_INS,
    BadInput,
    Handler,
    Request,
    read_under_roots,
    readable_path,
    stand_in,
)

log = logging.getLogger("radiant.local_model_server")

INSTANCE_HEADER = "X-Radiant-Instance"
# Sent by the router: the instance it means. Another instance (on a reused port) refuses the
# request with MISDIRECTED before running anything.
EXPECT_INSTANCE_HEADER = "X-Radiant-Expect-Instance"
MISDIRECTED = 421
STAND_IN_HEADER = "X-Radiant-Stand-In"
ASYNC_RUNNING_HEADER = "X-Radiant-Async-Running"  # on /ping: async jobs not yet finished
DRAINING_HEADER = "X-Radiant-Draining"  # on a refused async job: stopping, use another instance
INFERENCE_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex, as the backend makes them
# --log-file rotation: at most LOG_MAX_BYTES x (LOG_BACKUPS + 1) per instance.
LOG_MAX_BYTES = 1 << 20
LOG_BACKUPS = 1


def async_paths(async_dir: Path, inference_id: str) -> tuple[Path, Path]:
    """The output and failure files of an async inference (`inference_id` matches
    INFERENCE_ID). The server and the backend both derive them from the id, so no request
    names a path."""
    return async_dir / f"{inference_id}.out", async_dir / f"{inference_id}.error"


# --------------------------------------------------------------------------- reference stand-ins

# The stand-ins live in standin_handlers.py (pure functions, testable without a process); this
# module registers the LLM ones into the same table. HANDLERS is that table.
HANDLERS: dict[str, Handler] = STAND_INS


def pick_handler(category: str, specialty: str) -> tuple[str, Handler]:
    for key in (specialty, category):
        if key and key in HANDLERS:
            return key, HANDLERS[key]
    return "generic", generic


_WORDS = (
    "the model answers with a deterministic reference text derived from the prompt so tests "
    "and demos can check the shape of every response without a gpu"
).split()


def _vector(rng: random.Random, dim: int) -> list[float]:
    return [round(rng.uniform(-1.0, 1.0), 5) for _ in range(dim)]


def _sentence(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, n_words))).capitalize() + "."


def generate(model_id: str, prompt: str, max_tokens: int = 32) -> str:
    req = Request(prompt.encode(), "text/plain", model_id)
    return _sentence(req.rng(), min(max_tokens, 48))


@stand_in("text_generation", "llm_text")
def text_generation(req: Request) -> list[dict[str, str]]:
    """TGI's /invocations shape: `[{"generated_text": ...}]` (without the prompt)."""
    data = req.json()
    params = data.get("parameters", {}) if isinstance(data, dict) else {}
    max_new = int(params.get("max_new_tokens", 32)) if isinstance(params, dict) else 32
    return [{"generated_text": generate(req.model_id, req.text("inputs", "prompt"), max_new)}]


def generic(req: Request) -> dict[str, Any]:
    """Models with no stand-in of their own: echo what was received (size and digest)."""
    return {
        "model": req.model_id,
        "result": f"reference stand-in output {req.digest.hex()[:12]}",
        "input_bytes": len(req.body),
        "sha256": hashlib.sha256(req.body).hexdigest(),
        "stand_in": True,
    }


# --------------------------------------------------------------------------- OpenAI-compatible


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _prompt_of(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    parts = []
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


def openai_response(model_id: str, route: str, data: dict[str, Any]) -> dict[str, Any]:
    created = int(time.time())
    rid = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]
    name = data.get("model") or model_id
    if route == "embeddings":
        inputs = data.get("input", "")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        rows = [{"object": "embedding", "index": i,
                 "embedding": _vector(Request(str(x).encode(), "", model_id).rng(), 64)}
                for i, x in enumerate(inputs)]  # fmt: skip
        used = sum(_tokens(str(x)) for x in inputs)
        return {"object": "list", "data": rows, "model": name,
                "usage": {"prompt_tokens": used, "total_tokens": used}}  # fmt: skip
    chat = route == "chat"
    prompt = _prompt_of(data.get("messages")) if chat else str(data.get("prompt", ""))
    text = generate(model_id, prompt, int(data.get("max_tokens") or 32))
    usage = {"prompt_tokens": _tokens(prompt), "completion_tokens": _tokens(text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if chat:
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}  # fmt: skip
    else:
        choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{rid}", "created": created, "model": name,
            "object": "chat.completion" if chat else "text_completion",
            "choices": [choice], "usage": usage}  # fmt: skip


def openai_stream_chunks(full: dict[str, Any]) -> list[dict[str, Any]]:
    """The same completion as server-sent chunks (`stream: true`)."""
    content = full["choices"][0]["message"]["content"]
    base = {"id": full["id"], "created": full["created"], "model": full["model"],
            "object": "chat.completion.chunk"}  # fmt: skip
    words = content.split(" ")
    chunks = [{**base, "choices": [{"index": 0, "finish_reason": None,
                                    "delta": {"role": "assistant", "content": ""}}]}]  # fmt: skip
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                            "finish_reason": None}]})  # fmt: skip
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "usage": full["usage"]})  # fmt: skip
    return chunks


# --------------------------------------------------------------------------- async jobs


class AsyncJobs:
    """The async inferences this instance accepted and has not finished. When the instance
    stops, each one ends with its output or a failure file (as SageMaker writes a failure
    notification when an instance goes away): a caller polling for it never waits forever."""

    def __init__(self) -> None:
        # Also held while a job writes its result, so `close` never fails a job half-written.
        self._lock = threading.Lock()
        self._running: dict[threading.Thread, Path] = {}  # job thread -> its failure file
        self._closed = False

    def start(self, job: threading.Thread, fail: Path) -> bool:
        """Run `job`; False (not started) once the instance is stopping."""
        with self._lock:
            if self._closed:
                return False
            self._running[job] = fail
        job.start()
        return True

    def finish(self, write: Callable[[], None]) -> None:
        """Called by a job thread: write its result unless shutdown already failed it."""
        with self._lock:
            if self._running.pop(threading.current_thread(), None) is not None:
                write()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def stop_intake(self) -> None:
        with self._lock:
            self._closed = True

    def close(self, drain_seconds: float, deadline: float | None = None) -> int:
        """Refuse new jobs, let running ones finish for up to `drain_seconds` (or until the
        monotonic `deadline`), then write a failure file for each one left. Returns how many
        were failed."""
        self.stop_intake()
        with self._lock:
            jobs = list(self._running)
        if deadline is None:
            deadline = time.monotonic() + drain_seconds
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left, self._running = list(self._running.values()), {}
            why = f"instance stopped; the inference did not finish within {drain_seconds:g}s"
            for fail in left:
                _write_atomic(fail, json.dumps({"error": why}).encode())
        return len(left)


# --------------------------------------------------------------------------- HTTP server


class ModelServer(ThreadingHTTPServer):
    # Daemon threads: an idle keep-alive connection must not keep a stopping server alive; the
    # requests being served are waited for by `drain` instead.
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128  # listen backlog: a worker opens many connections at once

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__((args.host, args.port), RequestHandler)
        self.args = args
        self.ready = threading.Event()
        self.jobs = AsyncJobs()
        self.read_roots = tuple(Path(r).resolve() for r in args.read_root)
        self._busy = threading.Condition()  # guards the two below
        self._in_flight = 0  # POSTs being served
        self._stopping = False
        self.handler_key, self.handler = pick_handler(args.category, args.specialty)
        self.is_llm = "llm_text" in (args.category, args.specialty) or self.handler_key in (
            "text_generation",
            "llm_text",
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Into the (rotated) log: the default prints to stderr, which is not bounded.
        log.exception("error serving %s", client_address)

    def enter(self) -> bool:
        """A POST starts; False (refuse it) once the server is stopping."""
        with self._busy:
            if self._stopping:
                return False
            self._in_flight += 1
            return True

    def leave(self) -> None:
        with self._busy:
            self._in_flight -= 1
            self._busy.notify_all()

    def stop_intake(self) -> None:
        with self._busy:
            self._stopping = True

    def drain(self, seconds: float) -> int:
        """Refuse new POSTs and wait up to `seconds` for those being served (scale-in, delete and
        a blue/green switch must not cut a sync invocation off). Returns how many are left."""
        with self._busy:
            self._stopping = True
            self._busy.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, seconds))
            return self._in_flight


class RequestHandler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    # -- plumbing
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if "/ping" not in self.requestline:
            log.info("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header(INSTANCE_HEADER, self.server.args.instance_id)
        self.send_header(STAND_IN_HEADER, f"reference/{self.server.handler_key}")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), extra=extra)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _request(self, body: bytes) -> Request:
        return self._request_of(body, self.headers.get("Content-Type", "application/octet-stream"))

    def _request_of(self, body: bytes, ctype: str) -> Request:
        # Every request a handler sees carries the read roots: an envelope names files to read.
        return Request(body, ctype, self.server.args.model_id, self.server.read_roots)

    # -- routes
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/ping":
            if self.server.ready.is_set():
                running = str(self.server.jobs.running())  # lets scale-in pick idle instances
                self._json(200, {"status": "Healthy"}, {ASYNC_RUNNING_HEADER: running})
            else:
                self._json(503, {"status": "Loading"})
        elif self.path in ("/v1/models", "/models") and self.server.is_llm:
            model = {"id": self.server.args.model_id, "object": "model", "owned_by": "radiant"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        expected = self.headers.get(EXPECT_INSTANCE_HEADER)
        if expected and expected != self.server.args.instance_id:
            # Meant for an instance that had this port before: run nothing. The body is left
            # unread, so the connection closes.
            self.close_connection = True
            self._json(MISDIRECTED, {"error": f"this is instance {self.server.args.instance_id}, "
                                              f"not {expected}"})  # fmt: skip
            return
        body = self._body()
        if not self.server.enter():  # stopping: the caller tries another instance
            self.close_connection = True
            self._json(503, {"error": "instance is stopping"}, {DRAINING_HEADER: "1"})
            return
        try:
            self._serve_post(body)
        finally:
            self.server.leave()

    def _serve_post(self, body: bytes) -> None:
        if not self.server.ready.is_set():
            self._json(503, {"error": "model is loading"})
            return
        try:
            if self.path == "/invocations":
                time.sleep(self.server.args.invoke_seconds)  # simulated GPU time (default 0)
                self._json(200, self.server.handler(self._request(body)))
            elif self.path == "/invocations-async":
                self._async(body)
            elif self.server.is_llm and self.path.removeprefix("/v1") in _OPENAI_ROUTES:
                self._openai(_OPENAI_ROUTES[self.path.removeprefix("/v1")], body)
            else:
                self._json(404, {"error": f"no route POST {self.path}"})
        except BadInput as exc:
            self._json(400, {"error": str(exc)})
        except Exception as exc:  # a handler bug is the container's 500, not a dead server
            log.exception("handler failed")
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _openai(self, route: str, body: bytes) -> None:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise BadInput(f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadInput("request body must be a JSON object")
        full = openai_response(self.server.args.model_id, route, data)
        if route == "chat" and data.get("stream"):
            payload = b"".join(
                b"data: " + json.dumps(c).encode() + b"\n\n" for c in openai_stream_chunks(full)
            )
            self._send(200, payload + b"data: [DONE]\n\n", "text/event-stream")
        else:
            self._json(200, full)

    def _async(self, body: bytes) -> None:
        """SageMaker async stand-in: accept now (202), write the output file when done."""
        h = self.headers
        source = h.get("X-Amzn-SageMaker-InputLocation")
        inference_id = h.get("X-Amzn-SageMaker-InferenceId") or ""
        if not self.server.args.async_dir:
            self._json(404, {"error": "not an async inference endpoint"})
            return
        if not (source and INFERENCE_ID.fullmatch(inference_id)):
            raise BadInput("async needs InputLocation and an InferenceId of 32 hex digits")
        readable_path(source, self.server.read_roots)  # refused now (400); the job checks again
        out, fail = async_paths(Path(self.server.args.async_dir), inference_id)
        ctype = h.get("X-Amzn-SageMaker-Content-Type") or h.get("Content-Type", "")
        job = threading.Thread(
            target=self._run_async_job,
            args=(source, ctype, out, fail),
            name=f"async-{inference_id}",
            daemon=True,
        )
        if not self.server.jobs.start(job, fail):
            self._json(503, {"error": "instance is stopping"}, {DRAINING_HEADER: "1"})
            return
        self._json(202, {"InferenceId": inference_id, "OutputLocation": str(out),
                         "FailureLocation": str(fail)})  # fmt: skip

    def _run_async_job(self, source: str, ctype: str, out: Path, fail: Path) -> None:
        try:
            data = read_under_roots(source, self.server.read_roots)
            time.sleep(self.server.args.invoke_seconds)
            result = self.server.handler(self._request_of(data, ctype))
            path, payload = out, json.dumps(result).encode()
        except Exception as exc:
            log.warning("async inference failed: %s", exc)
            path, payload = fail, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        self.server.jobs.finish(lambda: _write_atomic(path, payload))


_OPENAI_ROUTES = {"/chat/completions": "chat", "/completions": "text", "/embeddings": "embeddings"}


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see half a file


# --------------------------------------------------------------------------- process life


def _check_model_data(url: str | None) -> None:
    """Like SageMaker's model download: missing local model data fails the start."""
    if not url:
        return
    if url.startswith("s3://"):
        log.warning("stand-in does not download %s; serving the reference stand-in", url)
        return
    path = Path(url.removeprefix("file://"))
    if not path.exists():
        log.error("model data not found: %s", path)
        raise SystemExit(2)


def _watch_record(server: ModelServer, stop: threading.Event) -> None:
    """Exit when the endpoint record no longer lists this instance (deleted or scaled in while
    its worker crashed), so the stand-in cannot leak orphan processes. Grace for the start."""
    args = server.args
    record, grace_until = Path(args.record_path), time.monotonic() + args.orphan_grace_seconds
    while not stop.wait(2.0):
        if time.monotonic() < grace_until:
            continue
        try:
            data = json.loads(record.read_text())
            listed = any(i.get("instance_id") == args.instance_id for i in data["instances"])
        except FileNotFoundError:
            listed = False
        except (ValueError, KeyError, TypeError, OSError):
            continue  # unreadable now; decide next round
        if not listed:
            log.warning("no longer in %s: exiting", record)
            threading.Thread(target=server.shutdown, daemon=True).start()
            return


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-id", required=True)
    p.add_argument("--category", default="")
    p.add_argument("--specialty", default="")
    p.add_argument("--endpoint-name", default="")
    p.add_argument("--instance-id", default=f"i-{os.getpid()}")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: the OS picks a free port")
    p.add_argument("--port-file", help="where to write the bound port (atomically)")
    p.add_argument("--record-path", help="endpoint record to watch for orphan exit")
    p.add_argument("--orphan-grace-seconds", type=float, default=30.0)
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=4.0,
        help="on SIGTERM: how long requests being served and running async jobs may finish",
    )
    p.add_argument("--model-data", help="ModelDataUrl: a local path must exist")
    p.add_argument("--log-file", help="log here, rotated (default: stderr, unbounded)")
    p.add_argument(
        "--log-max-bytes", type=int, default=LOG_MAX_BYTES, help="rotate the log file at this size"
    )
    p.add_argument(
        "--log-backups", type=int, default=LOG_BACKUPS, help="rotated log files kept (>= 1)"
    )
    p.add_argument("--async-dir", help="where async results go; none: no /invocations-async")
    p.add_argument(
        "--read-root",
        action="append",
        default=[],
        help="a directory inputs may be read from (repeatable); none: no local path is read",
    )
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=float(os.environ.get("RADIANT_LOCAL_WARMUP_SECONDS", "0") or 0),
        help="simulated model load time before /ping answers 200",
    )
    p.add_argument(
        "--invoke-seconds",
        type=float,
        default=float(os.environ.get("RADIANT_LOCAL_INVOKE_SECONDS", "0") or 0),
        help="simulated inference time added to every invocation (sync and async)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler: logging.Handler
    if args.log_file:  # with backupCount 0 the file is reopened, not emptied: keep >= 1
        handler = logging.handlers.RotatingFileHandler(
            args.log_file, maxBytes=max(1, args.log_max_bytes), backupCount=max(1, args.log_backups)
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s [{args.instance_id}] %(levelname)s %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    _check_model_data(args.model_data)
    server = ModelServer(args)
    port = server.server_address[1]
    if args.port_file:  # bound before written: the parent never races for the port
        _write_atomic(Path(args.port_file), f"{port}\n".encode())
    log.info(
        "reference stand-in %r for %s (%s/%s) on %s:%d, pid %d",
        server.handler_key, args.model_id, args.category, args.specialty, args.host, port,
        os.getpid(),
    )  # fmt: skip

    def load() -> None:  # the model "load": a configurable delay, then /ping says ready
        time.sleep(max(0.0, args.warmup_seconds))
        server.ready.set()
        log.info("ready")

    stop = threading.Event()
    threading.Thread(target=load, daemon=True).start()
    if args.record_path:
        threading.Thread(target=_watch_record, args=(server, stop), daemon=True).start()

    def stop_serving() -> None:
        server.stop_intake()  # new requests go to another instance from now on
        server.jobs.stop_intake()
        server.shutdown()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=stop_serving, daemon=True).start()  # not from this thread

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        server.server_close()  # no new connections while the requests and async jobs drain
        deadline = time.monotonic() + args.drain_seconds  # one bound for both
        busy = server.drain(args.drain_seconds)
        if busy:
            log.warning("%d request(s) still being served at exit: cut off", busy)
        failed = server.jobs.close(args.drain_seconds, deadline)
        if failed:
            log.warning("%d async inference(s) unfinished at exit: failure written", failed)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
