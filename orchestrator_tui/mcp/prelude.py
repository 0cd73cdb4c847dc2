"""The worker's wire, and the handshake answered while the MCP SDK is still importing.

Importing the official MCP SDK (and pydantic with it) takes 0.5–1 s on a 2-core machine,
more than the 500 ms budget for "process start → ``initialize`` + ``tools/list`` answered".
So the worker takes hold of its stdin/stdout first thing, with the stdlib only, and a reader
thread answers the legacy handshake (``initialize``, then ``tools/list`` and ``ping``) and the
2026-07-28 discovery from :data:`HANDSHAKE_FILE`, answers recorded from the SDK itself by
:mod:`orchestrator_tui.mcp.recorder`, until the SDK is up.

The recorded answers are the SDK's only for the SDK version they were recorded with, which the
file names: with any other installed version (or no readable file) the prelude answers nothing
and the SDK answers everything; :attr:`Wire.notice` says why, and the worker logs it once.

Every line read is also handed to the SDK, in order, so its session goes through the same
handshake and owns the connection from then on. Its own answers to requests the prelude already
answered are not sent again; one that differs from what the prelude sent is logged as a warning
(the client keeps the prelude's). ``tests/test_mcp_prelude.py`` re-records the handshake from the
live SDK and fails if the shipped file differs (regenerate with
``python -m orchestrator_tui.mcp.recorder``).

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
#: The key of :data:`HANDSHAKE_FILE` naming the version of the ``mcp`` SDK that answered.
SDK_VERSION_KEY = "mcp_sdk"
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
#: How much of a differing SDK answer the warning quotes.
_QUOTED = 400
_REGENERATE = "regenerate it with `python -m orchestrator_tui.mcp.recorder`"


def installed_sdk_version() -> str | None:
    """The version of the installed ``mcp`` distribution, or None if it cannot be told.

    Read from its ``dist-info`` metadata beside the package, found without importing it:
    :mod:`importlib.metadata` alone costs ~40 ms, a tenth of the start-up budget.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("mcp")
    except (ImportError, ValueError):
        return None
    versions: set[str] = set()
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        for info in Path(location).parent.glob("mcp-*.dist-info"):
            try:
                with open(info / "METADATA", encoding="utf-8") as metadata:
                    for line in metadata:
                        if line.startswith("Version:"):
                            versions.add(line.split(":", 1)[1].strip())
                            break
                        if not line.strip():
                            break
            except OSError:
                continue
    return versions.pop() if len(versions) == 1 else None


def load_handshake(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The recorded answers if they are the installed SDK's, else None and the reason why."""
    try:
        handshake = json.loads(path.read_text(encoding="utf-8"))
        recorded = handshake[SDK_VERSION_KEY]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return None, f"the MCP SDK answers the handshake itself: {path} cannot be used ({exc!r}); {_REGENERATE}"
    installed = installed_sdk_version()
    if recorded != installed:
        return None, (
            f"the MCP SDK answers the handshake itself: {path.name} was recorded with mcp {recorded}, "
            f"the installed mcp is {installed or 'unknown'}; {_REGENERATE}"
        )
    return handshake, None


class Wire:
    """Sole owner of the JSON-RPC byte streams of this process."""

    def __init__(self, handshake: dict[str, Any] | None, notice: str | None = None) -> None:
        in_fd, out_fd = os.dup(0), os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._in = os.fdopen(in_fd, "rb", closefd=False)
        self._out = os.fdopen(out_fd, "wb", closefd=False)
        self._lock = threading.Lock()
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        #: Requests the prelude answered (JSON of their id) → (method, the result it sent).
        self._answered: dict[str, tuple[str, Any]] = {}
        self._handshake = handshake
        #: Why the prelude answers nothing (None when it serves the handshake), for the log.
        self.notice = notice
        self._state = "fresh"  # fresh → legacy | modern → handed-over (or passthrough)
        self._initialized = False
        #: (name, version) of the MCP client, once its first request named it.
        self.client_info: tuple[str, str | None] | None = None
        self._thread = threading.Thread(target=self._read, name="mcp-wire-reader", daemon=True)

    @classmethod
    def open(cls) -> Wire:
        wire = cls(*load_handshake(HANDSHAKE_FILE))
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
                    self._respond(message["id"], method, result)
                elif method == "tools/list" and not params.get("cursor"):
                    self._respond(message["id"], method, self._handshake["tools/list"])
                elif method == "ping":
                    self._respond(message["id"], method, {})
            elif self._state == "modern":
                # 2026-07-28: every request carries its own envelope; answer the two discovery
                # requests when the envelope names a version we recorded.
                meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
                answers = self._handshake.get("modern", {}).get(meta.get(PROTOCOL_VERSION_KEY))
                if answers is None:
                    return
                if method == "server/discover" or (method == "tools/list" and not params.get("cursor")):
                    self._respond(message["id"], method, answers[method])

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
        if isinstance(meta, dict) and meta.get(PROTOCOL_VERSION_KEY) in self._handshake.get("modern", {}):  # type: ignore[union-attr]
            return "modern"
        return "passthrough"

    def _respond(self, request_id: Any, method: str, result: Any) -> None:
        self._answered[json.dumps(request_id)] = (method, result)
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
                        method, sent = self._answered.pop(key)
                        if message.get("result") != sent:
                            _warn_differs(method, key, text)
                        return
            self._out.write(text.encode() if text.endswith("\n") else (text + "\n").encode())
            self._out.flush()


def _warn_differs(method: str, request_id: str, answer: str) -> None:
    """The recorded handshake no longer says what the SDK says: never drop that silently."""
    import logging

    quoted = answer.strip() if len(answer) <= _QUOTED else answer[:_QUOTED].rstrip() + "…"
    logging.getLogger(__name__).warning(
        "the MCP SDK answers %s (id %s) differently from the recorded handshake the client already got; %s. "
        "The SDK's answer: %s",
        method,
        request_id,
        _REGENERATE,
        quoted,
    )


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
