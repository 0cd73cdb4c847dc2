"""The worker's wire, and the handshake answered while the MCP SDK is still importing.

Importing the official MCP SDK (and pydantic with it) takes 0.5–1 s on a 2-core machine,
more than the 500 ms budget for "process start → ``initialize`` + ``tools/list`` answered".
So the worker takes hold of its stdin/stdout first thing, with the stdlib only, and a reader
thread answers the legacy handshake (``initialize``, then ``tools/list`` and ``ping``) from
:data:`HANDSHAKE_FILE` — responses recorded from the SDK itself — until the SDK is up.

Every line read is also handed to the SDK, in order, so its session goes through the same
handshake and owns the connection from then on; the SDK's own answers to requests the prelude
already answered are dropped on the way out. ``tests/test_mcp_prelude.py`` re-records the
handshake from the live SDK and fails if the shipped file differs (regenerate with
``python -m orchestrator_tui.mcp.prelude``), so the two can never disagree.

The wire also moves fd 0 to /dev/null and fd 1 onto stderr, so nothing else in the process (a
stray print, a child process) can read the JSON-RPC input or corrupt the output.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any

HANDSHAKE_FILE = Path(__file__).with_name("handshake.json")
_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"


class Wire:
    """Sole owner of the JSON-RPC byte streams of this process."""

    def __init__(self, handshake: dict[str, Any] | None = None, *, claim_std_fds: bool = True) -> None:
        if claim_std_fds:
            in_fd, out_fd = os.dup(0), os.dup(1)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(2, 1)
            sys.stdout = sys.stderr
        else:  # pragma: no cover - used by tests that provide pipes
            in_fd, out_fd = 0, 1
        self._in = os.fdopen(in_fd, "rb", closefd=False)
        self._out = os.fdopen(out_fd, "wb", closefd=False)
        self._lock = threading.Lock()
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._answered: set[str] = set()
        self._handshake = handshake
        self._state = "fresh"  # fresh → legacy | modern → handed-over (or passthrough)
        self._initialized = False
        #: (name, version) of the MCP client, once its first request named it.
        self.client_info: tuple[str, str | None] | None = None
        self._thread = threading.Thread(target=self._read, name="mcp-wire-reader", daemon=True)

    @classmethod
    def open(cls) -> Wire:
        try:
            handshake = json.loads(HANDSHAKE_FILE.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            handshake = None  # no fast path; the SDK answers everything
        wire = cls(handshake)
        wire._thread.start()
        return wire

    # ---------------------------------------------------------------- input

    def _read(self) -> None:
        try:
            for line in self._in:
                self._maybe_answer(line)
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def next_line(self) -> bytes | None:
        """Blocking: the next raw input line, or None at EOF (called from a worker thread)."""
        return self._lines.get()

    def end_input(self) -> None:
        """Shutdown without stdin EOF (SIGTERM): wake a thread blocked in :meth:`next_line`,
        which would otherwise keep the interpreter from exiting (thread workers are not daemons)."""
        self._lines.put(None)

    def _maybe_answer(self, line: bytes) -> None:
        with self._lock:
            fast_path = self._state not in ("handed-over", "passthrough") and self._handshake is not None
            if not fast_path and self.client_info is not None:
                return
            try:
                message = json.loads(line)
            except ValueError:
                return
            if not isinstance(message, dict) or "id" not in message or "method" not in message:
                return
            method = message["method"]
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            if self.client_info is None:
                self._note_client(method, params)
            if not fast_path:
                return
            if self._state == "fresh":
                self._state = self._open(method, params)
                if self._state == "passthrough":
                    return
            if self._state == "legacy":
                if method == "initialize" and not self._initialized:
                    result = self._handshake["initialize"].get(params.get("protocolVersion"))
                    if result is None:
                        self._state = "passthrough"
                        return
                    self._initialized = True
                    self._respond(message["id"], result)
                elif method == "tools/list" and not params.get("cursor"):
                    self._respond(message["id"], self._handshake["tools/list"])
                elif method == "ping":
                    self._respond(message["id"], {})
            elif self._state == "modern":
                # 2026-07-28: every request carries its own envelope; answer the two discovery
                # requests when the envelope names a version we recorded.
                meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
                answers = self._handshake.get("modern", {}).get(meta.get(_VERSION_KEY))
                if answers is None:
                    return
                if method == "server/discover" or (method == "tools/list" and not params.get("cursor")):
                    self._respond(message["id"], answers[method])

    def _note_client(self, method: str, params: dict[str, Any]) -> None:
        """Who is calling (``clientInfo`` of ``initialize``, or the 2026-07-28 envelope's), as soon
        as it says so: the pool's members list shows it before the first tool call."""
        info = params.get("clientInfo") if method == "initialize" else None
        if info is None:
            meta = params.get("_meta")
            info = meta.get("io.modelcontextprotocol/clientInfo") if isinstance(meta, dict) else None
        if isinstance(info, dict) and isinstance(info.get("name"), str):
            version = info.get("version")
            self.client_info = (info["name"], version if isinstance(version, str) else None)

    def _open(self, method: str, params: dict[str, Any]) -> str:
        """The first request decides the era, exactly as the SDK does."""
        if method == "initialize":
            return "legacy"
        meta = params.get("_meta")
        if isinstance(meta, dict) and meta.get(_VERSION_KEY) in self._handshake.get("modern", {}):  # type: ignore[union-attr]
            return "modern"
        return "passthrough"

    def _respond(self, request_id: Any, result: Any) -> None:
        self._answered.add(json.dumps(request_id))
        payload = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, ensure_ascii=False)
        self._out.write(payload.encode() + b"\n")
        self._out.flush()

    def hand_over(self) -> None:
        """The SDK is serving: stop answering anything ourselves."""
        with self._lock:
            if self._state != "passthrough":
                self._state = "handed-over"

    # ---------------------------------------------------------------- output

    def write(self, text: str) -> None:
        """Write one outgoing JSON-RPC line, unless the prelude already answered that request."""
        with self._lock:
            if self._answered:
                try:
                    message = json.loads(text)
                except ValueError:
                    message = None
                if isinstance(message, dict) and "method" not in message and "id" in message:
                    key = json.dumps(message["id"])
                    if key in self._answered:
                        self._answered.discard(key)
                        return
            self._out.write(text.encode() if text.endswith("\n") else (text + "\n").encode())
            self._out.flush()


class AsyncWireIn:
    """The SDK's stdin: an async iterator of text lines fed by the wire's reader thread."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def __aiter__(self) -> AsyncWireIn:
        return self

    async def __anext__(self) -> str:
        import anyio.to_thread

        line = await anyio.to_thread.run_sync(self._wire.next_line, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class AsyncWireOut:
    """The SDK's stdout: line writes go through the wire's filter."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    async def write(self, text: str) -> None:
        self._wire.write(text)

    async def flush(self) -> None:
        return None


# -------------------------------------------------------------------- recording


async def record_handshake() -> dict[str, Any]:
    """Ask the real SDK server what it answers to each handshake the prelude may take over."""
    import anyio
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

    from orchestrator_tui.mcp.server import build_server

    server = build_server(None)
    answers: dict[str, Any] = {"initialize": {}, "tools/list": None}

    async def exchange(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        send_in, read_in = anyio.create_memory_object_stream[Any](32)
        send_out, read_out = anyio.create_memory_object_stream[Any](32)
        replies: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run, read_in, send_out, server.create_initialization_options())
            for request in requests:
                await send_in.send(SessionMessage(jsonrpc_message_adapter.validate_python(request)))
                if "id" in request:
                    reply = await read_out.receive()
                    replies.append(json.loads(reply.message.model_dump_json(by_alias=True, exclude_unset=True)))
            await send_in.aclose()
            tg.cancel_scope.cancel()
        return replies

    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "rec", "version": "0"}},
        }
        replies = await exchange(
            [
                init,
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            ]
        )
        answers["initialize"][version] = replies[0]["result"]
        answers["tools/list"] = replies[1]["result"]
    answers["modern"] = {}
    for version in MODERN_PROTOCOL_VERSIONS:
        meta = {
            _VERSION_KEY: version,
            "io.modelcontextprotocol/clientInfo": {"name": "rec", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        replies = await exchange(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}},
            ]
        )
        answers["modern"][version] = {"server/discover": replies[0]["result"], "tools/list": replies[1]["result"]}
    return answers


def main() -> int:
    """Regenerate :data:`HANDSHAKE_FILE` from the installed SDK and the current tool catalogue."""
    import asyncio

    answers = asyncio.run(record_handshake())
    HANDSHAKE_FILE.write_text(
        json.dumps(answers, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {HANDSHAKE_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
