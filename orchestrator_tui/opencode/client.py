"""Async HTTP client for the OpenCode server: one method per operation we use.

Two route families, one interface (issue 12). OpenCode 1.18.33 serves its new ``/api/`` routes
beside the legacy ones its next major version drops. A client speaks ``api`` when the server
answers ``GET /api/health`` (probed once per server, after the first health check, or on the
first operation that needs to know), else ``legacy``; ``ORCHESTRATOR_TUI_BACKEND=legacy|api|auto``
(or the ``backend`` argument) forces one. Callers never see the difference: same methods, same
models (``/api`` shapes are mapped onto them in :mod:`.models`), same errors.

The ``/api`` routes cover an operation only when they show the *same* state the legacy ones do.
On 1.18.33 they do not for turns: ``/api`` runs prompts in a runtime of its own ("session
next"), whose messages, statuses (``/api/session/active``), permission and question requests
and events (``/api/event``) are separate from those of the legacy runtime that runs commands
(``/api`` has no command route) and honours the model config: a permission asked in a turn
started by ``prompt_async`` is absent from ``/api/permission/request``, and its session is
absent from ``/api/session/active`` (docs/opencode-behaviour.md, ``tests/test_api_backend.py``).
So turns stay on the legacy runtime in both backends, and ``api`` uses ``/api`` for the sessions
themselves, which both runtimes share:

=================  ====================================  ==========================================
operation          ``api`` backend                       ``legacy`` backend (and ``api`` fallback)
=================  ====================================  ==========================================
health             ``GET /global/health`` (``/api/health`` has no version)
all_sessions       ``GET /api/session`` (every project)  ``GET /experimental/session``
get_session        ``GET /api/session/{id}``             ``GET /session/{id}``
create_session     ``POST /api/session`` (untitled,      ``POST /session``
                   no parent; else legacy)
commands           legacy: ``/api/command`` leaves out the skills ``/command`` lists and runs
list_sessions      legacy (``/api`` has no change summary, nor the project scope)
session_status,    legacy: the legacy runtime's turns are invisible to ``/api``
messages, prompt,
abort, summarize,
permissions,
questions, replies
command, delete,   legacy: no ``/api`` route
paths, providers
event stream       legacy ``/global/event`` (``/api/event`` lacks the legacy runtime's events)
=================  ====================================  ==========================================

Errors are typed and their ``str()`` is the text the tools show to the caller:
``HTTP error <status>: <message>``, ``Transport error: <text>``, ``JSON error: <text>``.
Every request has a timeout: OpenCode can accept a connection and never answer it
(docs/opencode-behaviour.md), so an unbounded request is a hang waiting to happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from orchestrator_tui.opencode.models import (
    Agent,
    ApiSessionItem,
    ApiSessionPage,
    Command,
    Health,
    Message,
    Paths,
    PermissionRequest,
    QuestionRequest,
    Session,
    SessionStatus,
)
from orchestrator_tui.opencode.secret import Secret

T = TypeVar("T")

#: Default per-request timeout. Long enough for any REST call OpenCode answers, short enough
#: that a wedged connection surfaces as an error instead of a hang.
DEFAULT_TIMEOUT = 60.0
#: The command endpoint blocks until the whole turn ends (docs/opencode-behaviour.md); it gets its own budget.
COMMAND_TIMEOUT = 6 * 3600.0


#: The route family a client speaks (see the module docstring).
Backend = Literal["legacy", "api"]
#: Forces the route family of every client made in this process (tests run both this way).
BACKEND_ENV = "ORCHESTRATOR_TUI_BACKEND"
BACKEND_CHOICES = ("auto", "legacy", "api")


class OpenCodeError(Exception):
    """Base of every error the client raises; ``str()`` is user-facing."""


class HttpStatusError(OpenCodeError):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        self.status = status
        self.message = message
        self.body = body
        super().__init__(f"HTTP error {status}: {message}")


class TransportError(OpenCodeError):
    def __init__(self, text: str, *, connect_failed: bool = False, timed_out: bool = False) -> None:
        #: True when the request provably never reached the server (connection refused):
        #: the only case where re-sending a non-idempotent request is safe.
        self.connect_failed = connect_failed
        self.timed_out = timed_out
        super().__init__(f"Transport error: {text}")


class DecodeError(OpenCodeError):
    def __init__(self, text: str) -> None:
        super().__init__(f"JSON error: {text}")


def error_message_from_body(status: int, text: str) -> str:
    """Choose the message of a non-2xx answer the way the reference client does."""
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = body.get("error")
        if body.get("success") is False and isinstance(errors, list):
            rendered = []
            for entry in errors:
                if isinstance(entry, dict):
                    msg = entry.get("message")
                    path = entry.get("path")
                    if isinstance(msg, str) and isinstance(path, list) and path:
                        rendered.append(".".join(str(p) for p in path) + ": " + msg)
                    elif isinstance(msg, str):
                        rendered.append(msg)
                    else:
                        rendered.append(json.dumps(entry))
                else:
                    rendered.append(str(entry))
            return "; ".join(rendered)
        data = body.get("data")
        if isinstance(body.get("name"), str) and isinstance(data, dict) and isinstance(data.get("message"), str):
            return f"{body['name']}: {data['message']}"
        if isinstance(body.get("message"), str):
            return body["message"]
    if not text.strip():
        return f"HTTP {status}"
    return text if len(text) <= 1024 else text[:1024] + "…"


_SESSIONS = TypeAdapter(list[Session])
_STATUSES = TypeAdapter(dict[str, SessionStatus])
_MESSAGES = TypeAdapter(list[Message])
_PERMISSIONS = TypeAdapter(list[PermissionRequest])
_QUESTIONS = TypeAdapter(list[QuestionRequest])
_COMMANDS = TypeAdapter(list[Command])
_API_SESSION_PAGE = TypeAdapter(ApiSessionPage)
_API_SESSION_ITEM = TypeAdapter(ApiSessionItem)


def backend_wanted(env: Mapping[str, str] | None = None) -> str:
    """``auto``, ``legacy`` or ``api``, from ``ORCHESTRATOR_TUI_BACKEND`` (``auto`` when unset)."""
    value = (env if env is not None else os.environ).get(BACKEND_ENV, "").strip().lower() or "auto"
    if value not in BACKEND_CHOICES:
        raise ValueError(
            f"{BACKEND_ENV}={value!r} is not one of {', '.join(BACKEND_CHOICES)}. Fix: set one of them or unset it."
        )
    return value


class _BackendChoice:
    """Which route family a server speaks: shared by a client and all its :meth:`~OpenCodeClient.at` views."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted
        self.resolved: Backend | None = wanted if wanted in ("legacy", "api") else None  # type: ignore[assignment]
        self.lock = asyncio.Lock()
_AGENTS = TypeAdapter(list[Agent])


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client. Building one reads the whole CA bundle (5-10 ms of CPU),
    and a dashboard following several servers makes a client for each as it starts."""
    return httpx.create_ssl_context(trust_env=False)


class OpenCodeClient:
    """A thin typed client bound to one server (and optionally one directory instance).

    ``directory`` is sent as a query parameter on every non-``/global/`` request, as the
    reference does, so the managed server's working directory scopes sessions and commands.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: tuple[str, Secret | str] | None = None,
        directory: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        backend: str | None = None,
    ) -> None:
        """``backend``: ``auto`` (probe), ``legacy`` or ``api``; default ``ORCHESTRATOR_TUI_BACKEND``."""
        if backend is not None and backend not in BACKEND_CHOICES:
            raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
        self._backend = _BackendChoice(backend or backend_wanted())
        self.base_url = base_url.rstrip("/")
        self.directory = directory
        #: (username, password); the password stays a `Secret` everywhere but in the auth header.
        self.auth: tuple[str, Secret] | None = None
        if auth is not None:
            password = auth[1] if isinstance(auth[1], Secret) else Secret(auth[1])
            self.auth = (auth[0], password)
        self.timeout = timeout
        #: Views of this server scoped to other directories (:meth:`at`), shared by all of them.
        self._views: dict[str | None, OpenCodeClient] = {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(self.auth[0], self.auth[1].reveal()) if self.auth else None,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            verify=_tls_context(),
            # A proxy from the environment must never capture traffic to our own server.
            trust_env=False,
            # Keep-alive connections to a server that just died fail on reuse; a small pool
            # and short expiry keep the recovery path quick.
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=5.0),
        )

    # ------------------------------------------------------------------ plumbing

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    def at(self, directory: str | None) -> OpenCodeClient:
        """This server, scoped to another directory's instance (``None``: unscoped).

        One OpenCode server serves many directories, and its sessions, statuses, requests and
        commands are per directory: answering a request of a session in project B needs B's
        instance. The view shares this client's connections (and closes with it), so a pool
        spanning every directory does not open a connection pool per project.
        """
        if directory == self.directory:
            return self
        views = self._views
        view = views.get(directory)
        if view is None:
            view = copy.copy(self)
            view.directory = directory
            view._views = views
            views[directory] = view
        return view

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def backend_name(self) -> Backend | None:
        """The route family in use, once known (the dashboard's server line shows it)."""
        return self._backend.resolved

    async def backend(self, *, timeout: float | None = None) -> Backend:
        """The route family this server speaks: ``api`` when it answers ``GET /api/health``.

        Probed once per server (all views share the answer). Only a 404 (or 405) means "no
        ``/api``"; any other failure is raised and nothing is remembered, so a server that was
        briefly unreachable is probed again rather than demoted for good.
        """
        choice = self._backend
        if choice.resolved is not None:
            return choice.resolved
        async with choice.lock:
            if choice.resolved is None:
                try:
                    response = await self.request("GET", "/api/health", timeout=timeout)
                    # Older releases (1.15) answer unknown routes with their web app's HTML page,
                    # 200: only a JSON object is the /api surface answering.
                    choice.resolved = "api" if isinstance(_json_or_none(response), dict) else "legacy"
                except HttpStatusError as exc:
                    if exc.status not in (404, 405):
                        raise
                    choice.resolved = "legacy"
        return choice.resolved

    async def _api(self) -> bool:
        return await self.backend() == "api"

    def _params(self, path: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        # `/api/` routes name a directory their own way (`location[...]`, or `directory` as a
        # filter of the session list): the caller passes it; `/global/` routes take none.
        if self.directory and not path.startswith(("/global/", "/api/")):
            params["directory"] = self.directory
        if extra:
            params.update({k: v for k, v in extra.items() if v is not None})
        return params

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                path,
                params=self._params(path, params),
                json=json_body,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.ConnectError as exc:
            raise TransportError(_describe(exc), connect_failed=True) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(_describe(exc), timed_out=True) from exc
        except httpx.HTTPError as exc:
            raise TransportError(_describe(exc)) from exc
        except RuntimeError as exc:
            if not self._http.is_closed:
                raise
            # A client of a server that was replaced (the pool closes it): a transport failure,
            # never an untyped crash in whoever still held it.
            raise TransportError("the connection to this OpenCode server was closed (the server was replaced)") from exc
        if response.status_code >= 400:
            text = response.text
            try:
                body = response.json()
            except ValueError:
                body = None
            raise HttpStatusError(response.status_code, error_message_from_body(response.status_code, text), body)
        return response

    async def _get(self, path: str, adapter: TypeAdapter[T], **kw: Any) -> T:
        response = await self.request("GET", path, **kw)
        return _decode(response, adapter)

    # ------------------------------------------------------------------ endpoints

    async def health(self, *, timeout: float | None = None) -> Health:
        """``GET /global/health`` (the version; ``/api/health`` has none), then the route family.

        Every front end checks health before anything else, so the route family is known from
        then on (the dashboard shows it). A probe that fails is left for the first operation.
        """
        # Both at once: a dashboard starting with several servers waits one round trip less each.
        probe = asyncio.ensure_future(self._probe_quietly(timeout)) if self._backend.resolved is None else None
        try:
            response = await self.request("GET", "/global/health", timeout=timeout)
            health = _decode(response, Health)
        except BaseException:
            if probe is not None:
                probe.cancel()
            raise
        if probe is not None:
            await probe
        return health

    async def _probe_quietly(self, timeout: float | None) -> None:
        with contextlib.suppress(OpenCodeError):
            await self.backend(timeout=timeout)

    async def list_sessions(self, *, limit: int | None = None, roots: bool | None = None) -> list[Session]:
        params = {"limit": limit, "roots": None if roots is None else str(roots).lower()}
        return await self._get("/session", _SESSIONS, params=params)

    async def all_sessions(self, *, limit: int | None = None) -> list[Session]:
        """Sessions of every directory and project the server's database holds.

        ``GET /session`` covers only one project (the directory's, or the server's own), and a
        dashboard must show every project's sessions. OpenCode 1.18.33 lists them all at
        ``GET /experimental/session``; a server without that route (404) gets the one-project list.
        """
        if await self._api():
            return await self._api_sessions(limit)
        try:
            # Unscoped: a directory would narrow the list to that directory.
            return await self.at(None)._get("/experimental/session", _SESSIONS, params={"limit": limit})
        except HttpStatusError as exc:
            if exc.status != 404:
                raise
        return await self.list_sessions(limit=limit)

    async def _api_sessions(self, limit: int | None) -> list[Session]:
        """``GET /api/session``: every project's sessions, newest first, a page at a time.

        Without a limit, pages are followed (``cursor.next``) until one comes back empty.
        """
        sessions: list[Session] = []
        cursor: str | None = None
        for _ in range(100):  # a bound, never a loop forever on a server that repeats a cursor
            params = {"limit": limit, "cursor": cursor}
            page = await self._get("/api/session", _API_SESSION_PAGE, params=params)
            sessions.extend(item.to_session() for item in page.data)
            cursor = page.cursor.next if page.cursor else None
            if limit is not None or not page.data or not cursor:
                break
        return sessions if limit is None else sessions[:limit]

    async def create_session(self, *, title: str | None = None, parent_id: str | None = None) -> Session:
        if title is None and parent_id is None and await self._api():
            # `/api` takes neither a title nor a parent: those sessions are made the legacy way.
            body_api: dict[str, Any] = {"location": {"directory": self.directory}} if self.directory else {}
            response = await self.request("POST", "/api/session", json_body=body_api)
            return _decode(response, _API_SESSION_ITEM).data.to_session()
        body: dict[str, Any] = {}
        if title is not None:
            body["title"] = title
        if parent_id is not None:
            body["parentID"] = parent_id
        return _decode(await self.request("POST", "/session", json_body=body), Session)

    async def get_session(self, session_id: str) -> Session:
        if await self._api():
            response = await self.request("GET", f"/api/session/{_seg(session_id)}")
            return _decode(response, _API_SESSION_ITEM).data.to_session()
        return _decode(await self.request("GET", f"/session/{_seg(session_id)}"), Session)

    async def delete_session(self, session_id: str) -> None:
        await self.request("DELETE", f"/session/{_seg(session_id)}")

    async def abort_session(self, session_id: str) -> None:
        await self.request("POST", f"/session/{_seg(session_id)}/abort")

    async def session_status(self, *, timeout: float | None = None) -> dict[str, SessionStatus]:
        return await self._get("/session/status", _STATUSES, timeout=timeout)

    async def messages(self, session_id: str, *, limit: int | None = None) -> list[Message]:
        return await self._get(f"/session/{_seg(session_id)}/message", _MESSAGES, params={"limit": limit})

    async def prompt_async(
        self,
        session_id: str,
        text: str,
        *,
        message_id: str | None = None,
        agent: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a prompt; ``message_id`` (see :mod:`.ids`) becomes the user message's id."""
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if message_id is not None:
            body["messageID"] = message_id
        if agent:
            body["agent"] = agent
        if extra:
            body.update(extra)
        await self.request("POST", f"/session/{_seg(session_id)}/prompt_async", json_body=body)

    async def command(
        self, session_id: str, command: str, arguments: str, *, message_id: str | None = None
    ) -> dict[str, Any]:
        """Run a named command. Blocks until the command's turn is over (docs/opencode-behaviour.md)."""
        body: dict[str, Any] = {"command": command, "arguments": arguments}
        if message_id is not None:
            body["messageID"] = message_id
        response = await self.request(
            "POST", f"/session/{_seg(session_id)}/command", json_body=body, timeout=COMMAND_TIMEOUT
        )
        return _decode_any(response)

    async def summarize(self, session_id: str, provider_id: str, model_id: str) -> None:
        # OpenCode 1.18.33 wants `providerID`/`modelID`; the reference sent camel `Id` and
        # always got a 400.
        await self.request(
            "POST",
            f"/session/{_seg(session_id)}/summarize",
            json_body={"providerID": provider_id, "modelID": model_id},
        )

    async def permissions(self, *, timeout: float | None = None) -> list[PermissionRequest]:
        return await self._get("/permission", _PERMISSIONS, timeout=timeout)

    async def reply_permission(self, request_id: str, reply: str, message: str | None = None) -> None:
        body: dict[str, Any] = {"reply": reply}
        if message is not None:
            body["message"] = message
        await self.request("POST", f"/permission/{_seg(request_id)}/reply", json_body=body)

    async def questions(self, *, timeout: float | None = None) -> list[QuestionRequest]:
        return await self._get("/question", _QUESTIONS, timeout=timeout)

    async def reply_question(self, request_id: str, answers: Sequence[Sequence[str]]) -> None:
        await self.request(
            "POST", f"/question/{_seg(request_id)}/reply", json_body={"answers": [list(a) for a in answers]}
        )

    async def reject_question(self, request_id: str) -> None:
        await self.request("POST", f"/question/{_seg(request_id)}/reject", json_body={})

    async def commands(self) -> list[Command]:
        # Legacy in both backends: `/api/command` leaves out the skills `/command` lists (and the
        # command route runs), and has no `source`.
        return await self._get("/command", _COMMANDS)

    async def agents(self) -> list[Agent]:
        """``GET /agent``: every agent of the instance, hidden ones included."""
        return await self._get("/agent", _AGENTS)

    async def paths(self) -> Paths:
        """``GET /path``: the instance's directory, its worktree (``/`` outside git) and the home folder."""
        return _decode(await self.request("GET", "/path"), Paths)

    async def providers(self) -> dict[str, Any]:
        return _decode_any(await self.request("GET", "/provider"))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _seg(value: str) -> str:
    """Percent-encode an id as exactly one path segment."""
    return quote(value, safe="")


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _decode(response: httpx.Response, adapter: TypeAdapter[T] | type[BaseModel]) -> Any:
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_json(response.content)
        return adapter.model_validate_json(response.content)
    except ValidationError as exc:
        raise DecodeError(_short_validation(exc)) from exc


def _decode_any(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise DecodeError(str(exc)) from exc


def _short_validation(exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{first.get('msg', 'invalid response')}{' at ' + loc if loc else ''} ({exc.error_count()} error(s))"
