"""The pool as a running service: server handle + event stream + live state + registry.

Both front ends build one :class:`PoolService`. It decides which server to use (a managed
``opencode serve`` we start, or one the user attached with ``--attach``), keeps the pool's
event stream pointed at the current server, and resyncs the live state on every connect,
because OpenCode replays nothing after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator_tui.opencode.client import OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.events import EventStream, StreamStatus
from orchestrator_tui.pool.handle import ServerHandle, ServerUnavailable, Snapshot
from orchestrator_tui.pool.state import Pool

log = logging.getLogger(__name__)

ATTACH_ENV = "ORCHESTRATOR_TUI_ATTACH"
#: Sessions the resync reads; OpenCode's default page is only 100 (observed §0.8).
RESYNC_SESSION_LIMIT = 10_000


@dataclass(frozen=True)
class ServerSpec:
    """How to get a server: start one in ``cwd``, or attach to ``attach_url``."""

    cwd: Path
    attach_url: str | None = None
    username: str = "opencode"
    password: str | None = None
    #: Test/demo seam: the OPENCODE_CONFIG_CONTENT given to a managed server.
    config_content: str | None = None
    env: Mapping[str, str] | None = None
    #: Scope REST calls to this directory (the reference sends the launch cwd everywhere).
    scope_directory: bool = True

    @classmethod
    def from_env(cls, cwd: Path | None = None, attach_url: str | None = None) -> ServerSpec:
        cwd = (cwd or Path.cwd()).resolve()
        url = attach_url or os.environ.get(ATTACH_ENV) or None
        return cls(
            cwd=cwd,
            attach_url=url,
            username=os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"),
            password=os.environ.get("OPENCODE_SERVER_PASSWORD") if url else None,
        )


async def start_managed(spec: ServerSpec) -> Snapshot:
    """Start a managed server, check its version and load its model limits (spec §5.4–5.6)."""
    from orchestrator_tui.opencode import binary
    from orchestrator_tui.opencode.process import ManagedServer, ServerStartError

    env = dict(spec.env if spec.env is not None else os.environ)
    try:
        launcher = await asyncio.to_thread(binary.resolve_launcher, spec.cwd, env)
    except binary.LauncherError as exc:
        raise ServerUnavailable(f"Failed to resolve OpenCode launcher configuration: {exc}") from exc
    try:
        server = await ManagedServer.start(launcher=launcher, cwd=spec.cwd, env=env, config_content=spec.config_content)
    except ServerStartError as exc:
        raise ServerUnavailable(f"Failed to start embedded `opencode serve`: {exc}") from exc
    client = OpenCodeClient(
        server.base_url,
        auth=(server.username, server.password),
        directory=str(spec.cwd) if spec.scope_directory else None,
    )
    snapshot = Snapshot(client=client, managed=server)
    try:
        health = await client.health(timeout=10.0)
    except OpenCodeError as exc:
        await snapshot.close()
        raise ServerUnavailable(f"{binary.HEALTH_FETCH_FAILED}: {exc}") from exc
    try:
        binary.validate_exact_version(health.version)
    except binary.VersionMismatch as exc:
        await snapshot.close()
        raise ServerUnavailable(f"{binary.version_mismatch_text(' '.join(launcher.argv()))}: {exc}") from exc
    snapshot.version = health.version
    snapshot.model_limits = await load_model_limits(client)
    return snapshot


async def start_attached(spec: ServerSpec) -> Snapshot:
    assert spec.attach_url
    auth = (spec.username, spec.password) if spec.password else None
    client = OpenCodeClient(spec.attach_url, auth=auth, directory=str(spec.cwd) if spec.scope_directory else None)
    snapshot = Snapshot(client=client)
    try:
        health = await client.health(timeout=5.0)
    except OpenCodeError as exc:
        await client.aclose()
        hint = ""
        if "401" in str(exc):
            hint = " (wrong or missing password: set OPENCODE_SERVER_PASSWORD to the server's password)"
        raise ServerUnavailable(
            f"External OpenCode server unavailable (base_url={client.base_url}): {exc}{hint}"
        ) from exc
    snapshot.version = health.version
    snapshot.model_limits = await load_model_limits(client)
    return snapshot


async def load_model_limits(client: OpenCodeClient) -> dict[tuple[str, str], int]:
    """Context windows by (provider, model); best effort (spec §2.6)."""
    limits: dict[tuple[str, str], int] = {}
    try:
        data = await client.providers()
    except OpenCodeError as exc:
        log.warning("could not load model limits: %s", exc)
        return limits
    for provider in (data or {}).get("all", []) if isinstance(data, dict) else []:
        if not isinstance(provider, dict):
            continue
        pid = provider.get("id")
        for mid, model in (provider.get("models") or {}).items():
            context = ((model or {}).get("limit") or {}).get("context") if isinstance(model, dict) else None
            if isinstance(pid, str) and isinstance(context, int) and context > 0:
                limits[(pid, mid)] = context
    return limits


def recursion_guard(env: Mapping[str, str] | None = None) -> str | None:
    from orchestrator_tui.opencode import binary

    if binary.managed_guard_enabled(env if env is not None else os.environ):
        return binary.RECURSION_GUARD_TEXT
    return None


class PoolService:
    """Owns the handle, the pool and the event stream of one process."""

    def __init__(self, spec: ServerSpec, *, handle: ServerHandle | None = None) -> None:
        self.spec = spec
        self.pool = Pool()
        self._stream: EventStream | None = None
        self._stream_snapshot: Snapshot | None = None
        if handle is None:
            if spec.attach_url:
                handle = ServerHandle(lambda: start_attached(spec), on_replace=self._on_replace)
            else:
                handle = ServerHandle(
                    lambda: start_managed(spec),
                    guard=lambda: recursion_guard(spec.env),
                    on_replace=self._on_replace,
                )
        else:
            handle._on_replace = self._on_replace
        self.handle = handle

    async def acquire(self) -> Snapshot:
        snapshot = await self.handle.acquire()
        if snapshot is not self._stream_snapshot:
            await self._attach(snapshot)
        return snapshot

    async def _on_replace(self, old: Snapshot | None, new: Snapshot) -> None:
        await self._attach(new)
        if old is not None:
            asyncio.get_running_loop().create_task(old.client.aclose())

    async def _attach(self, snapshot: Snapshot) -> None:
        if self._stream is not None:
            await self._stream.stop()
        self._stream_snapshot = snapshot
        client = snapshot.client

        async def resync() -> None:
            await self.resync(client)

        # A directory-scoped pool listens to that directory's instance, so the stream and the
        # resync (also scoped) describe the same set of sessions.
        self._stream = EventStream(
            client,
            self.pool.apply,
            on_connected=resync,
            on_status=self._on_stream_status,
            global_stream=client.directory is None,
        ).start()

    async def reconnect(self) -> None:
        """Drop and reopen the event stream (it resyncs on connect, as after any reconnect)."""
        if self._stream_snapshot is not None:
            await self._attach(self._stream_snapshot)

    def _on_stream_status(self, status: StreamStatus) -> None:
        self.pool.set_connection(status.state, status.detail)

    async def wait_stream(self, timeout: float) -> bool:
        """Wait until the event stream is connected (best effort; polling covers gaps)."""
        return self._stream is not None and await self._stream.wait_connected(timeout)

    async def resync(self, client: OpenCodeClient | None = None) -> None:
        """Re-read sessions, statuses and pending requests (after every (re)connect)."""
        if client is None:
            snapshot = self._stream_snapshot
            if snapshot is None:
                return
            client = snapshot.client
        # Each part on its own: OpenCode 1.18.33 answers GET /permission with HTTP 400 while a
        # webfetch permission is pending (its metadata does not serialize), and that must not
        # cost us the sessions and statuses.
        results = await asyncio.gather(
            client.list_sessions(limit=RESYNC_SESSION_LIMIT),
            client.session_status(),
            client.permissions(),
            client.questions(),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, OpenCodeError):
                raise result
            if isinstance(result, OpenCodeError):
                log.warning("pool resync incomplete: %s", result)
        sessions, statuses, permissions, questions = results
        if not isinstance(sessions, BaseException):
            self.pool.load_sessions(sessions, complete=True)
        if not isinstance(statuses, BaseException):
            self.pool.load_statuses(statuses)
        self.pool.load_requests(
            None if isinstance(permissions, BaseException) else permissions,
            None if isinstance(questions, BaseException) else questions,
        )
        self.pool.resyncs += 1

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        await self.handle.close()
