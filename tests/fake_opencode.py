"""A small scriptable fake OpenCode HTTP server (the Python counterpart of the seed's wiremock).

It is a real HTTP/1.1 server on 127.0.0.1 with a free port, written on ``asyncio.start_server``,
so client timeouts, delayed answers, stalled event streams and dropped connections behave as they
do on the network. It runs inside the test's event loop and stops in milliseconds (every
connection handler is cancelled, whatever it was waiting for).

Routes are matched by method and path; ``{name}`` segments are path parameters. A literal route
wins over a parameterised one (``/session/status`` before ``/session/{id}``); registering the same
method and path again replaces the route. Unmocked routes answer 404. Every request is recorded
(method, path, query, JSON body) on the server and on the route that answered it.

What a route answers is a *responder*:

* a :class:`Reply` (status, JSON body, delay, "stall" = never answer, "drop" = close the connection);
* any JSON value (shorthand for ``Reply(body=value)``);
* :class:`Seq` — replies in order, then the last one forever (wiremock scenario style);
* :class:`SwitchAfter` — one responder until another route has been called N times, then another;
* a callable ``(Request) -> responder`` (sync or async);
* :class:`Sse` — a ``text/event-stream`` that sends scripted events (and whatever
  :meth:`FakeOpenCode.emit` pushes later), then stays open.

``/event`` and ``/global/event`` are both served: the client of an external snapshot without a
directory listens on ``/global/event``, whose payloads are wrapped ``{directory, payload}``.
By default the event stream *stalls* (the request is never answered), as in the seed's wiremock
tests, so REST polling drives every flow and nothing is resynced behind the test's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "FakeOpenCode",
    "Reply",
    "Request",
    "Route",
    "Seq",
    "Sse",
    "SwitchAfter",
    "answered",
    "assistant_message",
    "build_orchestrator",
    "commands_json",
    "message_list",
    "permission_json",
    "question_json",
    "session_json",
    "status_busy",
    "status_idle",
    "status_retry",
    "user_message",
]

HEALTH = {"healthy": True, "version": "test"}
#: How long a "stalled" answer waits: far longer than any test (the server is stopped before).
STALL_SECONDS = 3600.0

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# ------------------------------------------------------------------------------------ requests


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"<{self.method} {self.path}{'?' + query if query else ''}>"


# ------------------------------------------------------------------------------------ responders


@dataclass
class Reply:
    """One answer. ``body`` is JSON-encoded unless ``text`` is given; 204 sends no body."""

    body: Any = None
    status: int = 200
    delay: float = 0.0
    #: Never answer (the request hangs until the client gives up or the server stops).
    stall: bool = False
    #: Close the connection without answering (after ``delay``).
    drop: bool = False
    text: str | None = None
    headers: Mapping[str, str] | None = None


class Seq:
    """Answers in order, then repeats the last one."""

    def __init__(self, *responses: Any) -> None:
        assert responses, "a sequence needs at least one response"
        self.responses = list(responses)
        self.calls = 0

    def pick(self) -> Any:
        index = min(self.calls, len(self.responses) - 1)
        self.calls += 1
        return self.responses[index]


class SwitchAfter:
    """``before`` until ``route`` has been called at least ``n`` times, then ``after``."""

    def __init__(self, route: Route, n: int, before: Any, after: Any) -> None:
        self.route, self.n, self.before, self.after = route, n, before, after

    def pick(self) -> Any:
        return self.after if self.route.count >= self.n else self.before


class Sse:
    """An event stream: ``server.connected`` (unless ``connected=False``: a 200 stream that stays
    silent), then ``events`` (a number in the list = sleep that many seconds), then every event
    :meth:`FakeOpenCode.emit` pushes; open until ``close``."""

    def __init__(
        self,
        *events: Mapping[str, Any] | float,
        close: bool = False,
        connected: bool = True,
        directory: str = "/tmp",
    ) -> None:
        self.events = list(events)
        self.close = close
        self.connected = connected
        self.directory = directory


Responder = Any  # Reply | Seq | SwitchAfter | Sse | Callable | JSON value


@dataclass
class Route:
    method: str
    pattern: str
    responder: Responder
    calls: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = []
        for segment in self.pattern.strip("/").split("/"):
            m = re.fullmatch(r"\{(\w+)\}", segment)
            parts.append(f"(?P<{m.group(1)}>[^/]+)" if m else re.escape(segment))
        self._regex = re.compile("^/" + "/".join(parts) + "$")
        self.literal = "{" not in self.pattern

    @property
    def count(self) -> int:
        return len(self.calls)

    def match(self, path: str) -> dict[str, str] | None:
        m = self._regex.match(path)
        return {k: unquote(v) for k, v in m.groupdict().items()} if m else None


# ------------------------------------------------------------------------------------ the server


class FakeOpenCode:
    """``async with FakeOpenCode() as fake:`` — ``fake.url`` is its base URL."""

    def __init__(self, *, health: bool = True, events: str = "stall") -> None:
        self._routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: list[asyncio.Queue[Mapping[str, Any]]] = []
        self._arrived: asyncio.Condition | None = None
        self.url = ""
        if health:
            self.get("/global/health", HEALTH)
        # What a command run looks up before it is sent (its template, where it runs); tests that
        # care mount their own.
        self.get("/command", commands_json("research", "plan", "build"))
        self.get("/path", {"home": "/home/fake", "directory": "/tmp/fake", "worktree": "/tmp/fake"})
        if events == "stall":
            self.stall_events()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeOpenCode:
        self._arrived = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None

    async def __aenter__(self) -> FakeOpenCode:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ mocking

    def route(self, method: str, path: str, responder: Responder) -> Route:
        route = Route(method.upper(), path, responder)
        self._routes[(route.method, path)] = route
        return route

    def get(self, path: str, responder: Responder) -> Route:
        return self.route("GET", path, responder)

    def post(self, path: str, responder: Responder) -> Route:
        return self.route("POST", path, responder)

    def stall_events(self) -> None:
        """The event stream never answers (the seed's "SSE stalls")."""
        for path in ("/event", "/global/event"):
            self.get(path, Reply(stall=True))

    def sse(self, *events: Mapping[str, Any] | float, close: bool = False, connected: bool = True) -> None:
        """Serve a scripted event stream on ``/event`` and ``/global/event``.

        Unlike :meth:`stall_events`, the stream opens (200), so the pool connects and resyncs
        (GET /session, /session/status, /permission, /question) — mind sequence responders.
        """
        for path in ("/event", "/global/event"):
            self.get(path, Sse(*events, close=close, connected=connected))

    def emit(self, event: Mapping[str, Any]) -> int:
        """Push one event to every open event stream; returns how many streams got it."""
        for queue in self._streams:
            queue.put_nowait(event)
        return len(self._streams)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def calls(self, method: str, path: str) -> list[Request]:
        """Recorded requests with exactly this method and (concrete) path."""
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def count(self, method: str, path: str) -> int:
        return len(self.calls(method, path))

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    async def wait_for(self, method: str, path: str, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``n`` requests ``method path`` have arrived."""
        assert self._arrived is not None, "start the server first"
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.count(method, path) >= n)

    def _find(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        exact = self._routes.get((method, path))
        if exact is not None:
            return exact, {}
        for (m, _), route in self._routes.items():
            if m == method and not route.literal:
                params = route.match(path)
                if params is not None:
                    return route, params
        return None, {}

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                if self._arrived is not None:
                    async with self._arrived:
                        self._arrived.notify_all()
                route, params = self._find(request.method, request.path)
                if route is None:
                    await _write(writer, Reply({"name": "NotFoundError", "data": {"message": "not mocked"}}, 404))
                    continue
                request.params = params
                route.calls.append(request)
                keep_open = await self._answer(route.responder, request, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, responder: Responder, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Resolve and send; False when the connection must be closed."""
        while True:
            if isinstance(responder, Seq | SwitchAfter):
                responder = responder.pick()
            elif callable(responder) and not isinstance(responder, Reply | Sse):
                responder = responder(request)
                if inspect.isawaitable(responder):
                    responder = await responder
            else:
                break
        if isinstance(responder, Sse):
            await self._stream(responder, request, writer)
            return False
        reply = responder if isinstance(responder, Reply) else Reply(body=responder)
        if reply.stall:
            await asyncio.sleep(STALL_SECONDS)
            return False
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            return False
        await _write(writer, reply)
        return True

    async def _stream(self, sse: Sse, request: Request, writer: asyncio.StreamWriter) -> None:
        wrap = request.path.startswith("/global/")
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode())

        async def send(event: Mapping[str, Any]) -> None:
            payload: Any = event
            if wrap and event.get("type") not in ("server.connected", "server.heartbeat"):
                payload = {"directory": sse.directory, "project": "proj1", "payload": event}
            data = f"data: {json.dumps(payload)}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self._streams.append(queue)
        try:
            if sse.connected:
                await send({"type": "server.connected", "properties": {}})
            else:
                await writer.drain()
            for item in sse.events:
                if isinstance(item, int | float):
                    await asyncio.sleep(item)
                else:
                    await send(item)
            if sse.close:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return
            while True:
                await send(await queue.get())
        finally:
            self._streams.remove(queue)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    parts = urlsplit(target)
    return Request(method.upper(), parts.path, dict(parse_qsl(parts.query)), headers, body)


async def _write(writer: asyncio.StreamWriter, reply: Reply) -> None:
    if reply.status == 204:
        payload = b""
    elif reply.text is not None:
        payload = reply.text.encode()
    else:
        payload = json.dumps(reply.body).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
    headers.update(reply.headers or {})
    reason = _REASONS.get(reply.status, "Status")
    head = f"HTTP/1.1 {reply.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(head.encode() + payload)
    await writer.drain()


# ------------------------------------------------------------------------------------ fixtures
# The seed's wiremock fixtures, in OpenCode 1.18.33 field casing.


def session_json(sid: str, **overrides: Any) -> dict[str, Any]:
    session: dict[str, Any] = {
        "id": sid,
        "slug": f"slug-{sid}",
        "projectID": "proj1",
        "directory": "/tmp",
        "path": "",
        "title": "Test Session",
        "version": "1.0",
        "time": {"created": 1234567890, "updated": 1234567890},
    }
    session.update(overrides)
    return session


def status_idle() -> dict[str, Any]:
    return {}


def status_busy(sid: str) -> dict[str, Any]:
    return {sid: {"type": "busy"}}


def status_retry(sid: str, attempt: int = 1, message: str = "retrying", next: int = 0) -> dict[str, Any]:
    return {sid: {"type": "retry", "attempt": attempt, "message": message, "next": next}}


def permission_json(
    pid: str, sid: str, permission: str = "edit", patterns: Sequence[str] = ("src/main.rs",)
) -> dict[str, Any]:
    return {
        "id": pid,
        "sessionID": sid,
        "permission": permission,
        "patterns": list(patterns),
        "always": [],
        "metadata": {},
        "tool": None,
    }


def question_json(qid: str, sid: str, question: str = "Continue?", **info: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "question": question,
        "header": "Question Header",
        "options": [{"label": "yes", "description": "Proceed"}, {"label": "no", "description": "Stop"}],
        "multiple": False,
        "custom": False,
    }
    entry.update(info)
    return {"id": qid, "sessionID": sid, "questions": [entry], "tool": None}


def user_message(sid: str, mid: str = "u1", created: int = 1, text: str = "hello") -> dict[str, Any]:
    return {
        "info": {"id": mid, "sessionID": sid, "role": "user", "time": {"created": created}},
        "parts": [{"id": f"{mid}-p1", "sessionID": sid, "messageID": mid, "type": "text", "text": text}],
    }


def assistant_message(
    sid: str,
    text: str | None = None,
    mid: str = "a1",
    parts: Sequence[Mapping[str, Any]] = (),
    created: int = 2,
    completed: int | None = None,
) -> dict[str, Any]:
    all_parts = [dict(p) for p in parts]
    if text is not None:
        all_parts.append({"id": f"{mid}-text", "sessionID": sid, "messageID": mid, "type": "text", "text": text})
    time: dict[str, int] = {"created": created}
    if completed is not None:
        time["completed"] = completed
    return {"info": {"id": mid, "sessionID": sid, "role": "assistant", "time": time}, "parts": all_parts}


def message_list(sid: str, text: str | None = None, *, reply_to: str | None = None) -> list[dict[str, Any]]:
    """The seed's messages fixture: user ``u1``, plus assistant ``a1`` with one text part when given.

    With ``reply_to``, the user message has that id and the assistant message answers it (its
    ``parentID``) and is complete, as OpenCode shows a turn over.
    """
    if reply_to is None:
        messages = [user_message(sid)]
        if text is not None:
            messages.append(assistant_message(sid, text))
        return messages
    messages = [user_message(sid, mid=reply_to, created=10)]
    if text is not None:
        reply = assistant_message(sid, text, mid="a-reply", created=11, completed=12)
        reply["info"]["parentID"] = reply_to
        messages.append(reply)
    return messages


def answered(fake: FakeOpenCode, sid: str, text: str | None = None) -> Any:
    """A transcript responder for the prompt or command last POSTed to ``sid``.

    OpenCode lets the client choose the new user message's id (``messageID``), and every
    assistant message answering it names that id as ``parentID``. This answers with the
    transcript as it stands once that message is stored and, when ``text`` is given, answered.
    """

    def respond(_request: Request) -> list[dict[str, Any]]:
        for request in reversed(fake.requests):
            if request.method == "POST" and request.path in (f"/session/{sid}/prompt_async", f"/session/{sid}/command"):
                body = request.json
                if isinstance(body, dict) and isinstance(body.get("messageID"), str):
                    return message_list(sid, text, reply_to=body["messageID"])
        return message_list(sid, text)

    return respond


def commands_json(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "description": f"{n} description", "template": "$ARGUMENTS", "hints": []} for n in names]


# ------------------------------------------------------------------------------------ orchestrator


def build_orchestrator(
    fake: FakeOpenCode,
    root: Path,
    *,
    idle_grace_ms: int | None = None,
    agentic_toml: str | None = None,
    timeout: float = 5.0,
    transport: Any = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """An :class:`Orchestrator` over ``fake`` through the external-snapshot seam.

    ``root`` gets a ``project`` dir (the cwd; its ``agentic.toml`` is ``agentic_toml``) and an
    empty global config dir, so no user config leaks in. The caller closes the orchestrator.
    """
    from orchestrator_tui.opencode.client import OpenCodeClient
    from orchestrator_tui.orchestrator.tools import Orchestrator
    from orchestrator_tui.pool.handle import ServerHandle, Snapshot
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    project = root / "project"
    project.mkdir(parents=True, exist_ok=True)
    (root / "global-config").mkdir(exist_ok=True)
    if agentic_toml is not None:
        (project / "agentic.toml").write_text(agentic_toml)
    environment = {
        "AGENTIC_LOGGING_DISABLED": "1",
        "__AGENTIC_CONFIG_DIR_FOR_TESTS": str(root / "global-config"),
        "HOME": str(root),
    }
    if idle_grace_ms is not None:
        environment["OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS"] = str(idle_grace_ms)
    environment.update(env or {})
    snapshot = Snapshot(client=OpenCodeClient(fake.url, timeout=timeout, transport=transport))
    service = PoolService(ServerSpec(cwd=project), handle=ServerHandle.preloaded(snapshot))
    return Orchestrator(service, env=environment)
