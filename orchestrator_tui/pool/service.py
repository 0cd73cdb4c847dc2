"""The pool as a running service: server handle + event stream + live state + registry.

Both front ends build one :class:`PoolService`. It decides which server to use (a managed
``opencode serve`` we start, or one the user attached with ``--attach``), keeps the pool's
event stream pointed at the current server, and resyncs the live state on every connect,
because OpenCode replays nothing after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.keeper import KeeperSpec
from orchestrator_tui.opencode.secret import Secret
from orchestrator_tui.pool.discovery import (
    Membership,
    PoolFolder,
    ProcessIdentity,
    ServerRecord,
    stop_recorded_server,
)
from orchestrator_tui.pool.handle import ATTACH_FIX, ServerHandle, ServerUnavailable, Snapshot
from orchestrator_tui.pool.link import ServerLink
from orchestrator_tui.pool.servers import AttachedServer
from orchestrator_tui.pool.state import PRIMARY, Pool

log = logging.getLogger(__name__)

ATTACH_ENV = "ORCHESTRATOR_TUI_ATTACH"
#: What to do when an attached server refuses our password (HTTP 401).
PASSWORD_FIX = "set OPENCODE_SERVER_PASSWORD to the attached server's password"
#: What to do when we run inside a session OpenCode manages (the recursion guard).
GUARD_FIX = "you are inside an orchestrated session; run orchestrator-tui from a normal shell"


@dataclass(frozen=True)
class ServerSpec:
    """How to get a server: start one in ``cwd``, or attach to ``attach_url``."""

    cwd: Path
    attach_url: str | None = None
    username: str = "opencode"
    #: A plain ``str`` given here is wrapped; neither shows in the repr (nor do env and config).
    password: Secret | None = field(default=None, repr=False)
    #: Test/demo seam: the OPENCODE_CONFIG_CONTENT given to a managed server.
    config_content: str | None = field(default=None, repr=False)
    env: Mapping[str, str] | None = field(default=None, repr=False)
    #: Scope REST calls to this directory (the reference sends the launch cwd everywhere).
    scope_directory: bool = True
    #: Follow every directory the server serves (the dashboard), not only ``cwd``'s (a worker):
    #: the stream is ``/global/event``, the resync reads each live directory's instance, and
    #: what is done to a session goes to its own directory's instance.
    every_directory: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.password, str):
            object.__setattr__(self, "password", Secret(self.password))

    @classmethod
    def from_env(cls, cwd: Path | None = None, attach_url: str | None = None) -> ServerSpec:
        cwd = (cwd or Path.cwd()).resolve()
        url = attach_url or os.environ.get(ATTACH_ENV) or None
        return cls(
            cwd=cwd,
            attach_url=url,
            username=os.environ.get("OPENCODE_SERVER_USERNAME", "opencode"),
            password=Secret.of(os.environ.get("OPENCODE_SERVER_PASSWORD")) if url else None,
        )


async def start_managed(
    spec: ServerSpec, log_dir: Path | None = None, keeper: KeeperSpec | None = None
) -> Snapshot:
    """Start a managed server, check its version and load its model limits.

    ``log_dir``: the server's output goes to files there, so it may outlive us (a shared pool);
    ``keeper``: where its keeper watches (default: a private folder, the server is ours alone)."""
    from orchestrator_tui.opencode import binary
    from orchestrator_tui.opencode.process import START_FAILED, ManagedServer, ServerStartError

    env = dict(spec.env if spec.env is not None else os.environ)
    try:
        launcher = await asyncio.to_thread(binary.resolve_launcher, spec.cwd, env)
    except binary.LauncherError as exc:
        raise ServerUnavailable(f"{binary.RESOLVE_FAILED}: {exc}", exc.fix) from exc
    try:
        server = await ManagedServer.start(
            launcher=launcher,
            cwd=spec.cwd,
            env=env,
            config_content=spec.config_content,
            log_dir=log_dir,
            keeper=keeper,
        )
    except ServerStartError as exc:
        raise ServerUnavailable(f"{START_FAILED}: {exc}") from exc
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
    return snapshot


#: How long a front end waits for the keeper of a running server to restore a record it cannot
#: read (the keeper looks every quarter second), or to finish stopping a server, before it
#: gives up saying so: never by starting a second server.
KEPT_SERVER_WAIT = 10.0


async def start_shared(spec: ServerSpec, folder: PoolFolder) -> Snapshot:
    """The pool's managed server: attach to the one its record names if it answers, else start
    one and record it. Under the pool lock, so concurrent front ends end up on one server.

    A new server is started only when no keeper holds ``server-alive.lock`` (no server of the
    pool runs): the lock and the live server decide, not whether ``server.json`` parses. The
    caller is a front end of the pool: it holds ``alive.lock`` (`Membership.join`), or the
    keeper stops the new server at once."""
    deadline = time.monotonic() + KEPT_SERVER_WAIT
    while True:
        async with folder.lock():
            record = folder.read_record()
            if record is not None:
                snapshot = await _attach_record(spec, record)
                if snapshot is not None:
                    log.info("attached to the pool's OpenCode at %s (pid %d)", record.url, record.pid)
                    if not folder.server_kept():
                        await _adopt(folder, record)
                    return snapshot
                if record.alive():
                    # Running but not answering (we hold the lock: nobody is starting it). Replace it.
                    log.warning("the pool's OpenCode pid %d does not answer; replacing it", record.pid)
                    await stop_recorded_server(record)
            if not folder.server_kept():
                folder.clear_record()
                return await _start_recorded(spec, folder)
            if time.monotonic() >= deadline:
                raise ServerUnavailable(_kept_text(folder, record))
        # A keeper still holds server-alive.lock: its server runs (or is just stopping). Let it
        # restore the record (it needs the pool lock for that) and look again.
        await asyncio.sleep(0.1)


def _kept_text(folder: PoolFolder, record: ServerRecord | None) -> str:
    what = "cannot be read" if record is None else f"names pid {record.pid}, which is not that server"
    return (
        f"The pool's OpenCode server is running (its keeper holds {folder.path / 'server-alive.lock'}), but "
        f"its record {folder.record_path} {what}, and the keeper did not restore it within "
        f"{KEPT_SERVER_WAIT:.0f}s. orchestrator-tui will not start a second server for the pool. Fix: stop the "
        f"pool's other front ends (the server stops with the last one), or kill the keeper (its pid is in "
        f"{folder.path / 'server-alive.lock'}; it stops the server), then try again."
    )


async def _adopt(folder: PoolFolder, record: ServerRecord) -> None:
    """Give a running pool server whose keeper is gone (killed, or started by a version without
    one) a new keeper, so that it still stops with the pool's last front end."""
    from orchestrator_tui.opencode.process import ServerStartError, start_keeper

    if record.start_time is None:
        return
    log.warning("the pool's OpenCode pid %d has no keeper; starting one", record.pid)
    try:
        keeper = await asyncio.to_thread(start_keeper, folder.keeper_spec(), record.pid, record.start_time)
    except ServerStartError as exc:
        log.warning("could not give the pool's OpenCode pid %d a keeper: %s", record.pid, exc)
        return
    assert keeper.stdin is not None
    with contextlib.suppress(OSError):
        keeper.stdin.write(json.dumps(record.to_json()).encode())
    with contextlib.suppress(OSError):
        keeper.stdin.close()


async def _start_recorded(spec: ServerSpec, folder: PoolFolder) -> Snapshot:
    """Start the pool's server with its keeper and write its record (under the pool lock)."""
    snapshot = await start_managed(spec, log_dir=folder.path, keeper=folder.keeper_spec())
    server = snapshot.managed
    assert server is not None
    identity = ProcessIdentity.of(server.pid)  # what proves the pid is this server, later
    written = folder.write_record(
        ServerRecord(
            url=server.base_url,
            username=server.username,
            password=server.password,
            pid=server.pid,
            version=snapshot.version,
            cwd=str(spec.cwd),
            started_at=time.time(),
            started_by=os.getpid(),
            exe=identity.exe if identity is not None else None,
            start_time=identity.start_time if identity is not None else None,
        )
    )
    server.hand_record(written)
    log.info("started the pool's OpenCode at %s (pid %d)", server.base_url, server.pid)
    return snapshot


async def _attach_record(spec: ServerSpec, record: ServerRecord) -> Snapshot | None:
    from orchestrator_tui.opencode import binary

    if not record.alive():
        return None
    client = OpenCodeClient(
        record.url,
        auth=(record.username, record.password),
        directory=str(spec.cwd) if spec.scope_directory else None,
    )
    try:
        health = await client.health(timeout=3.0)
    except OpenCodeError as exc:
        log.warning("the pool's OpenCode at %s did not answer: %s", record.url, exc)
        await client.aclose()
        return None
    if not binary.attach_version_supported(health.version):
        await client.aclose()
        raise ServerUnavailable(
            f"{binary.attach_version_text(health.version, record.url)}. It is this pool's server (pid "
            f"{record.pid}), started by another orchestrator-tui. Fix: stop it (kill {record.pid}) and start "
            "again, or use another pool (--pool NAME)."
        )
    snapshot = Snapshot(client=client, version=health.version, shared_pid=record.pid)
    return snapshot


async def start_attached(spec: ServerSpec, *, pool_server: str | None = None) -> Snapshot:
    """Attach to a server someone else runs: ``--attach`` (the pool's own), or the pool's server
    named ``pool_server`` (``pool.toml``, ``--server``). Its version is checked first, so an
    OpenCode we do not support is refused here, naming the range, not by a failing call later."""
    from orchestrator_tui.opencode import binary

    assert spec.attach_url
    auth = (spec.username, spec.password) if spec.password else None
    client = OpenCodeClient(spec.attach_url, auth=auth, directory=str(spec.cwd) if spec.scope_directory else None)
    snapshot = Snapshot(client=client)
    try:
        health = await client.health(timeout=5.0)
    except OpenCodeError as exc:
        await client.aclose()
        text = f"External OpenCode server unavailable (base_url={client.base_url}): {exc}"
        if isinstance(exc, HttpStatusError) and exc.status == 401:
            raise ServerUnavailable(
                f"{text} (wrong or missing password: set OPENCODE_SERVER_PASSWORD to the server's password)",
                PASSWORD_FIX,
            ) from exc
        raise ServerUnavailable(text, ATTACH_FIX) from exc
    if not binary.attach_version_supported(health.version):
        await client.aclose()
        if pool_server is not None:
            fix = (
                f"run OpenCode {binary.attach_versions()} there, or take server {pool_server!r} out of "
                "pool.toml (or --server)"
            )
        else:
            fix = (
                f"attach to an OpenCode {binary.attach_versions()} server (`orchestrator-tui opencode path` "
                f"prints the pinned {binary.PINNED_VERSION}), or leave out --attach and orchestrator-tui starts "
                "its own"
            )
        raise ServerUnavailable(f"{binary.attach_version_text(health.version, client.base_url)}. Fix: {fix}.")
    snapshot.version = health.version
    return snapshot


def recursion_guard(env: Mapping[str, str] | None = None) -> ServerUnavailable | None:
    """Why no server may be started from here (we run inside a session OpenCode manages), or None."""
    from orchestrator_tui.opencode import binary

    if binary.managed_guard_enabled(env if env is not None else os.environ):
        return ServerUnavailable(binary.RECURSION_GUARD_TEXT, GUARD_FIX)
    return None


class PoolService:
    """The pool of one process: its own server, the servers attached to it, and their live state.

    What is done to a session goes to the server it lives on (:meth:`link_of`); a pool with one
    server behaves exactly as before there were several.
    """

    def __init__(
        self,
        spec: ServerSpec,
        *,
        handle: ServerHandle | None = None,
        membership: Membership | None = None,
        directories: Callable[[], Iterable[str]] | None = None,
        servers: Sequence[AttachedServer] = (),
    ) -> None:
        self.spec = spec
        self.pool = Pool()
        #: This front end's place in a shared pool (None: a private server, as in most tests).
        self.membership = membership
        if handle is None:
            if spec.attach_url:
                handle = ServerHandle(lambda: start_attached(spec), mode="external")
            else:
                folder = membership.folder if membership is not None else None

                def start() -> Awaitable[Snapshot]:
                    return start_shared(spec, folder) if folder is not None else start_managed(spec)

                handle = ServerHandle(start, guard=lambda: recursion_guard(spec.env))
        primary = ServerLink(PRIMARY, spec, self.pool, handle, directories=directories)
        self.links: dict[str, ServerLink] = {PRIMARY: primary}
        for server in servers:
            self.links[server.name] = _attached_link(server, spec, self.pool)
        self._others: list[asyncio.Task[None]] = []

    @property
    def primary(self) -> ServerLink:
        return self.links[PRIMARY]

    @property
    def handle(self) -> ServerHandle:
        """The pool's own server's handle."""
        return self.primary.handle

    async def acquire(self) -> Snapshot:
        """The pool's own server (started or attached on first use); the others start following
        in the background then, each on its own."""
        if not self._others and len(self.links) > 1:
            loop = asyncio.get_running_loop()
            self._others = [loop.create_task(link.keep_trying()) for link in self.links.values() if not link.primary]
        return await self.primary.acquire()

    @property
    def client(self) -> OpenCodeClient | None:
        """The client of the pool's own server now (None before the first acquire).

        Long waits (a run) use this rather than the client they started with: when the server is
        replaced, the old client is closed.
        """
        return self.primary.client

    def link_of(self, session_id: str | None) -> ServerLink:
        """The server a session lives on, as the pool knows it (the pool's own when unknown)."""
        if session_id is not None and len(self.links) > 1:
            view = self.pool.sessions.get(session_id)
            if view is not None and view.server in self.links:
                return self.links[view.server]
        return self.primary

    def client_for(self, session_id: str | None) -> OpenCodeClient | None:
        """The client for what is done to one session: its server, its directory's instance."""
        return self.link_of(session_id).client_for(session_id)

    async def acquire_for(self, session_id: str | None) -> OpenCodeClient:
        """The client for what is done to one session, its server acquired first (raises
        :class:`ServerUnavailable`, that server's own trouble, never another's)."""
        link = self.link_of(session_id)
        snapshot = await (self.acquire() if link.primary else link.acquire())
        client = link.client_for(session_id)
        return client if client is not None else snapshot.client

    async def wait_stream(self, timeout: float) -> bool:
        """Wait until the pool's own server's event stream is connected (best effort)."""
        return await self.primary.wait_stream(timeout)

    async def wait_synced(self, timeout: float) -> None:
        """Wait until the pool holds its own server's sessions, statuses and requests
        (:meth:`ServerLink.wait_synced`)."""
        await self.primary.wait_synced(timeout)

    async def resync(self, client: OpenCodeClient | None = None) -> None:
        """Re-read the pool's own server (``client``: a given client of it)."""
        await self.primary.resync(client)

    async def close(self) -> None:
        """Stop listening and leave. A private server is stopped here; a shared pool's server is
        left to its keeper, which stops it once no front end of the pool is alive (so at once
        when we were the last one). Attached servers are only let go of: they are not ours."""
        for task in self._others:
            task.cancel()
        for link in self.links.values():
            await link.stop()
            if not link.primary:
                await link.handle.close()
        membership = self.membership
        if membership is None:
            await self.handle.close()
            return
        snapshot = self.handle.current
        if snapshot is not None and snapshot.managed is not None and snapshot.managed.log_files is not None:
            snapshot.managed.detach()  # the keeper's from now on, whoever started it
        try:
            await self.handle.close()
        finally:
            membership.leave()


def _attached_link(server: AttachedServer, own: ServerSpec, pool: Pool) -> ServerLink:
    """A server the person attached to the pool: followed in every directory, never started."""
    spec = ServerSpec(
        cwd=own.cwd,
        attach_url=server.url,
        username=server.username,
        password=server.password,
        env=own.env,
        scope_directory=False,
        every_directory=True,
    )
    return ServerLink(
        server.name, spec, pool, ServerHandle(lambda: start_attached(spec, pool_server=server.name), mode="external")
    )
