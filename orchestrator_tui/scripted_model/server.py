"""The scripted model over HTTP: the project's only stand-in, an OpenAI-compatible provider.

OpenCode needs an LLM provider to do anything. Tests and `orchestrator-tui demo` must not depend on
a real (paid, non-deterministic, networked) model, so this module serves the small part of the
OpenAI chat-completions API that OpenCode's `@ai-sdk/openai-compatible` provider uses (streaming
and plain completions, tool calls, errors, a model list), and answers from a script instead of a
model: :func:`~orchestrator_tui.scripted_model.directives.choose_reply` decides, from the directive
language documented in :mod:`orchestrator_tui.scripted_model.directives`. Everything else in the
stack is real: OpenCode runs its real agent loop, real tools, real permissions and real questions
against these answers.

Only the standard library is used, so the server can run anywhere the package is installed and
start in milliseconds inside a test.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import select
import shlex
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final

from orchestrator_tui.scripted_model.directives import (
    ErrorReply,
    Reply,
    TextReply,
    ToolCallReply,
    choose_reply,
    message_text,
    tool_name_for,
)

PROVIDER_ID: Final = "scripted"
MODEL_NAME: Final = "scripted-model"
#: The `provider/model` id OpenCode knows this server by (see `opencode_config`).
MODEL_ID: Final = f"{PROVIDER_ID}/{MODEL_NAME}"

#: Seconds between SSE comment keepalives of ``HANG`` and ``STALL`` (also how fast a hang notices a disconnect).
KEEPALIVE_INTERVAL: Final = 0.5
#: Without a delay, SSE frames are coalesced into writes of about this many bytes, so ``FAST``
#: is limited by OpenCode rather than by one syscall per token. Each frame is still one chunk.
_WRITE_BUFFER: Final = 16 * 1024

# --------------------------------------------------------------------------------------------
# OpenCode configuration
# --------------------------------------------------------------------------------------------


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def opencode_config(base_url: str, **overrides: Any) -> dict[str, Any]:
    """The OpenCode config that makes this server OpenCode's model.

    Use it as ``OPENCODE_CONFIG_CONTENT`` (JSON) or as `opencode.json`. `small_model` is pinned
    too, so OpenCode's title requests come here as well rather than to a guessed provider model.
    External-directory access asks, so tests and the demo see real permission requests.
    `overrides` are deep-merged (nested dicts merge, anything else replaces).
    """
    config: dict[str, Any] = {
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Scripted model",
                "options": {"baseURL": base_url, "apiKey": "scripted"},
                "models": {
                    MODEL_NAME: {
                        "name": "Scripted model",
                        "tool_call": True,
                        "limit": {"context": 200000, "output": 8192},
                    }
                },
            }
        },
        "model": MODEL_ID,
        "small_model": MODEL_ID,
        "autoupdate": False,
        "share": "disabled",
        "permission": {"external_directory": "ask"},
    }
    return _deep_merge(config, overrides)


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

_DISCONNECTS: Final = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Stopped(Exception):
    """The server is stopping: abandon the response mid-stream, as a dying provider would."""


def _estimate_tokens(text: str) -> int:
    """Roughly four characters per token: plausible numbers for OpenCode's cost/usage display."""
    return max(1, (len(text) + 3) // 4)


class _Server(ThreadingHTTPServer):
    """One thread per connection: OpenCode streams a title and a reply at the same time.

    Handler threads are daemons and not joined on close; `ScriptedModelServer.stop` ends them
    itself by shutting their sockets down, so a hanging stream never blocks a test's teardown.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: ScriptedModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that vanish; report only real bugs."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (*_DISCONNECTS, _Stopped)) or self.owner.stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as OpenCode's fetch pools connections to its provider."""

    protocol_version = "HTTP/1.1"
    server_version = "ScriptedModel/1"
    server: _Server

    # -- bookkeeping --------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):
                super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log: it would drown a test's or the demo's output."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (*_DISCONNECTS, _Stopped):
            self.close_connection = True

    # -- plumbing -----------------------------------------------------------------------------

    def _send_json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._send_json(
            404,
            {
                "error": {
                    "message": f"no route for {self.path}",
                    "type": "invalid_request_error",
                    "code": None,
                }
            },
        )

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": PROVIDER_ID}],
                },
            )
        else:
            self._not_found()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._not_found()
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as exc:
            self._send_json(
                400, {"error": {"message": f"bad JSON body: {exc}", "type": "invalid_request_error"}}
            )
            return
        reply = choose_reply(body)
        self.server.owner._record(body, reply)
        if isinstance(reply, ErrorReply):
            self._send_json(
                reply.status, {"error": {"message": reply.message, "type": reply.error_type, "code": None}}
            )
        elif body.get("stream"):
            self._stream(body, reply)
        else:
            self._complete(body, reply)

    # -- answers ------------------------------------------------------------------------------

    def _usage(self, body: Mapping[str, Any], output: str) -> dict[str, int]:
        prompt = _estimate_tokens(json.dumps(body.get("messages") or [])) + _estimate_tokens(
            json.dumps(body.get("tools") or [])
        )
        completion = _estimate_tokens(output)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _wait(self, seconds: float) -> None:
        if self.server.owner.stopping.wait(seconds):
            raise _Stopped

    def _complete(self, body: Mapping[str, Any], reply: TextReply | ToolCallReply) -> None:
        """A plain (non-streaming) completion; not what OpenCode uses, but any client may ask."""
        owner = self.server.owner
        if isinstance(reply, ToolCallReply):
            arguments = json.dumps(reply.arguments)
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": owner._call_id(),
                        "type": "function",
                        "function": {"name": reply.name, "arguments": arguments},
                    }
                ],
            }
            finish, output = "tool_calls", arguments
        else:
            if reply.delay:
                self._wait(reply.delay * len(reply.chunks))
            if reply.hang:
                self._hang_until_gone()
            message = {"role": "assistant", "content": reply.text}
            finish, output = "stop", reply.text
        self._send_json(
            200,
            {
                "id": owner._completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": str(body.get("model") or MODEL_NAME),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": self._usage(body, output),
            },
        )

    def _hang_until_gone(self) -> None:
        """Hold a non-streaming request until the client disconnects or the server stops."""
        while True:
            self._wait(KEEPALIVE_INTERVAL)
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                raise ConnectionResetError("client went away")

    def _stream(self, body: Mapping[str, Any], reply: TextReply | ToolCallReply) -> None:
        """Server-sent events in OpenAI's chunk format, sent with chunked transfer encoding."""
        owner = self.server.owner
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {
            "id": owner._completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model") or MODEL_NAME),
        }
        pending = bytearray()

        def frame(data: bytes) -> None:
            pending.extend(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def event(
            delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
        ) -> None:
            chunk: dict[str, Any] = {
                **base,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                chunk["usage"] = usage
            frame(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        def flush() -> None:
            if pending:
                self.wfile.write(pending)
                self.wfile.flush()
                pending.clear()

        if isinstance(reply, ToolCallReply):
            arguments = json.dumps(reply.arguments)
            call = {
                "index": 0,
                "id": owner._call_id(),
                "type": "function",
                "function": {"name": reply.name, "arguments": arguments},
            }
            event({"role": "assistant", "content": None, "tool_calls": [call]})
            event({}, "tool_calls", self._usage(body, arguments))
        else:
            for index, chunk in enumerate(reply.chunks):
                event({"role": "assistant", "content": chunk} if index == 0 else {"content": chunk})
                if reply.delay:
                    flush()
                    self._wait(reply.delay)
                elif len(pending) >= _WRITE_BUFFER:
                    flush()
            if reply.hang:
                flush()
                while True:
                    self._wait(KEEPALIVE_INTERVAL)
                    frame(b": keepalive\n\n")
                    flush()  # raises once the client is gone
            event({}, "stop", self._usage(body, reply.text))
        frame(b"data: [DONE]\n\n")
        frame(b"")
        flush()


class ScriptedModelServer:
    """The scripted model on 127.0.0.1, served from a daemon thread.

    ``requests`` logs every chat request received, oldest first, as small dicts (``model``,
    ``stream``, ``tools``, ``last_role``, ``last_text``, ``tool`` for tool results, ``reply``: the
    kind of answer chosen), so tests can assert on what OpenCode asked. Usable as a context
    manager; ``stop()`` also ends streams that are still open (``HANG``, ``SLOW``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._ids = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ScriptedModelServer:
        """Bind (raising OSError if the port is taken) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("the scripted model server is already started")
        self.stopping.clear()
        self._httpd = _Server((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"scripted-model:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end open streams and keep-alive connections, and close the socket."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        deadline = time.monotonic() + 2
        while self._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        self._httpd = self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the scripted model server is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ending in /v1) to give OpenCode as the provider's baseURL."""
        return f"http://{self.host}:{self.port}/v1"

    # -- used by the handler ------------------------------------------------------------------

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _record(self, body: Mapping[str, Any], reply: Reply) -> None:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        last: Mapping[str, Any] = messages[-1] if messages else {}
        entry: dict[str, Any] = {
            "time": time.time(),
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "tools": [
                str((tool.get("function") or {}).get("name"))
                for tool in body.get("tools") or []
                if isinstance(tool, dict)
            ],
            "messages": len(messages),
            "last_role": last.get("role"),
            "last_text": message_text(last),
            "reply": reply.kind,
        }
        if last.get("role") == "tool":
            entry["tool"] = tool_name_for(messages[:-1], last.get("tool_call_id"))
        with self._lock:
            self.requests.append(entry)

    def _completion_id(self) -> str:
        return f"chatcmpl-scripted-{next(self._ids)}"

    def _call_id(self) -> str:
        return f"call_{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------------------------
# `orchestrator-tui scripted-model`
# --------------------------------------------------------------------------------------------


def _config_hint(base_url: str) -> str:
    config = json.dumps(opencode_config(base_url), separators=(",", ":"))
    return (
        "Point OpenCode at it with this config (opencode.json, or the environment):\n"
        f"  export OPENCODE_CONFIG_CONTENT={shlex.quote(config)}\n"
        f"Model: {MODEL_ID}. Directives: READ BASH EDIT WRITE ASK ASKMULTI CALL ECHO FAST SLOW HANG STALL "
        "ERROR500 ERROR400 STREAM."
    )


def main(port: int = 0) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; the address goes to stdout for scripts."""
    server = ScriptedModelServer(port=port)
    try:
        server.start()
    except OSError as exc:
        print(f"scripted model: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr, flush=True)
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"scripted model listening on {server.base_url}", flush=True)
        print(_config_hint(server.base_url), file=sys.stderr, flush=True)
        while not done.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return 0
