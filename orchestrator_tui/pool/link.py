"""One OpenCode server of the pool: its handle, its event stream, its resync and its recovery.

A pool follows its own server (:data:`~orchestrator_tui.pool.state.PRIMARY`: the managed one, or
the one ``--attach`` names) and any servers attached to it (:mod:`.servers`). Each is a
:class:`ServerLink` feeding the one shared :class:`~orchestrator_tui.pool.state.Pool`, tagged
with its name, so that a server going down marks its own sessions unreachable, recovers on its
own, and never holds the others up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from orchestrator_tui.opencode.client import OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.events import EventStream, StreamStatus
from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest, Session, SessionStatus
from orchestrator_tui.pool.handle import ServerHandle, ServerUnavailable, Snapshot
from orchestrator_tui.pool.state import PRIMARY, Pool

if TYPE_CHECKING:
    from orchestrator_tui.pool.service import ServerSpec

log = logging.getLogger(__name__)

#: Sessions the resync reads; OpenCode's default page is only 100 (docs/opencode-behaviour.md).
RESYNC_SESSION_LIMIT = 10_000
#: Sessions updated this recently (seconds) may still be running or waiting for an answer: a
#: resync of a pool following every directory re-reads their directories' instances.
ACTIVE_WINDOW = 24 * 3600.0
#: At most this many directories are re-read per resync (the most recently active ones).
MAX_RESYNC_DIRECTORIES = 64
#: Directories re-read at once during a resync.
RESYNC_CONCURRENCY = 8


class ServerLink:
    """One server of the pool (see the module docstring)."""

    def __init__(
        self,
        name: str,
        spec: ServerSpec,
        pool: Pool,
        handle: ServerHandle,
        *,
        directories: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.pool = pool
        #: Directories the pool's front ends work in (the workers' own), re-read on every resync
        #: of a pool that follows every directory: a worker's session may be waiting there.
        self._member_directories = directories
        self._stream: EventStream | None = None
        self._stream_snapshot: Snapshot | None = None
        self._recovery: asyncio.Task[None] | None = None
        #: Set once a resync has loaded this server's state into the pool (the one the stream
        #: starts on connect, usually): a front end paints its first list from that, not from
        #: a second read of its own.
        self._synced = asyncio.Event()
        handle._on_replace = self._on_replace
        self.handle = handle

    @property
    def primary(self) -> bool:
        return self.name == PRIMARY

    async def acquire(self) -> Snapshot:
        snapshot = await self.handle.acquire()
        if snapshot is not self._stream_snapshot:
            await self._attach(snapshot)
        return snapshot

    async def keep_trying(self) -> None:
        """Connect, however long the server takes to answer (an attached server may be down
        when we start); from then on the stream and :meth:`_recover` keep it followed."""
        delay = 1.0
        while True:
            try:
                await self.acquire()
                return
            except ServerUnavailable as exc:
                self.pool.set_connection("down", str(exc), server=self.name)
            except Exception:
                log.exception("connecting to OpenCode server %r failed", self.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _on_replace(self, old: Snapshot | None, new: Snapshot) -> None:
        await self._attach(new)
        if old is not None:
            asyncio.get_running_loop().create_task(old.client.aclose())

    async def _attach(self, snapshot: Snapshot) -> None:
        if self._stream is not None:
            await self._stream.stop()
        if self.primary and self._stream_snapshot is not None and snapshot is not self._stream_snapshot:
            # Another server (or the same one after a gap): its pending requests are not ours to
            # assume; the resync on connect tells which were lost with the old one.
            self.pool.server_replaced()
        self._stream_snapshot = snapshot
        client = snapshot.client

        async def resync() -> None:
            await self.resync(client)

        # A directory-scoped pool listens to that directory's instance, so the stream and the
        # resync (also scoped) describe the same set of sessions.
        apply = self.pool.apply if self.primary else self._apply
        self._stream = EventStream(
            client,
            apply,
            on_connected=resync,
            on_status=self._on_stream_status,
            global_stream=client.directory is None or self.spec.every_directory,
        ).start()

    @property
    def client(self) -> OpenCodeClient | None:
        """The client of the server the pool follows now (None before the first acquire).

        Long waits (a run) use this rather than the client they started with: when the server is
        replaced, the old client is closed.
        """
        return self._stream_snapshot.client if self._stream_snapshot is not None else None

    def client_for(self, session_id: str | None) -> OpenCodeClient | None:
        """The client for what is done to one session: its own directory's instance.

        A pool scoped to one directory uses its client as it is (the reference's behaviour); one
        following every directory routes each session to the instance that holds its requests
        and its project's config. An unknown session gets the pool's own directory.
        """
        client = self.client
        if client is None or not self.spec.every_directory or session_id is None:
            return client
        view = self.pool.sessions.get(session_id)
        directory = view.directory if view is not None else None
        return client.at(directory) if directory else client

    async def acquire_for(self, session_id: str | None) -> OpenCodeClient:
        """:meth:`acquire`, then :meth:`client_for` (raises :class:`ServerUnavailable`)."""
        snapshot = await self.acquire()
        client = self.client_for(session_id)
        return client if client is not None else snapshot.client

    def resync_directories(self, listed: Iterable[Session] = ()) -> list[str]:
        """The directories whose instances a resync re-reads, most recently active first.

        OpenCode lists statuses and requests per directory, with no list of the directories it
        has instances for; asking a directory it has none for starts one. So: the pool's own
        directory, the pool's members' directories, those the event stream carried, those with
        requests pending, and those of sessions active within :data:`ACTIVE_WINDOW` (a session
        waiting for an answer stays busy, but its last update may be hours old).
        """
        now = time.time()
        # A server of another machine knows nothing of our directories: only its own count there.
        found: dict[str, float] = {str(self.spec.cwd): now + 1} if self.primary else {}

        def add(directory: str | None, at: float) -> None:
            # Only absolute paths: the global stream also says "global" for events of no
            # directory, and a relative name would make OpenCode start an instance for it.
            if directory and directory.startswith("/") and found.get(directory, -1.0) < at:
                found[directory] = at

        if self._member_directories is not None and self.primary:
            try:
                for directory in self._member_directories():
                    add(directory, now)
            except Exception:  # the registry is advisory here; the stream and sessions remain
                log.warning("could not read the pool members' directories", exc_info=True)
        for directory, at in self.pool.directories_active.items():
            add(directory, at)
        sessions = self.pool.sessions
        for request in [*self.pool.permissions.values(), *self.pool.questions.values()]:
            view = sessions.get(request.sessionID)
            add(view.directory if view is not None else None, now)
        horizon = now - ACTIVE_WINDOW
        known = (view.info for view in sessions.values() if view.info is not None)
        for info in itertools.chain(known, listed):
            if info.directory and (updated := (info.time.updated or 0) / 1000) > horizon:
                add(info.directory, updated)
        ordered = sorted(found, key=found.__getitem__, reverse=True)
        if len(ordered) > MAX_RESYNC_DIRECTORIES:
            log.warning(
                "resync reads the %d most recently active of %d directories", MAX_RESYNC_DIRECTORIES, len(ordered)
            )
        return ordered[:MAX_RESYNC_DIRECTORIES]

    def _on_stream_status(self, status: StreamStatus) -> None:
        down = self.pool.servers.get(self.name, ("", ""))[0] == "down"
        if not (down and status.state in ("connecting", "disconnected")):
            # An attached server found down stays "down" while its stream keeps retrying.
            self.pool.set_connection(status.state, status.detail, server=self.name)
        if status.state == "disconnected" and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        """The stream dropped: if the server died, restart it (or follow the pool member that
        already did), instead of reconnecting to a dead URL until the next tool call."""
        delay = 0.3
        while (stream := self._stream) is not None and not stream.connected:
            try:
                await self.acquire()
            except ServerUnavailable as exc:
                log.warning("OpenCode still unavailable: %s", exc)
                if not self.primary:  # the pool's own has its own recovery (and its own words)
                    self.pool.set_connection("down", str(exc), server=self.name)
            except Exception:
                log.exception("recovering the OpenCode server failed")
            # Done the moment the (possibly new) stream connects; otherwise look again later.
            if (stream := self._stream) is None or await stream.wait_connected(delay):
                return
            delay = min(delay * 2, 10.0)

    async def wait_stream(self, timeout: float) -> bool:
        """Wait until the event stream is connected (best effort; polling covers gaps).

        Whichever stream is current counts: after a server is replaced, the old stream is
        stopped and a new one made a moment later, and the old one never connects again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (stream := self._stream) is not None:
            remaining = deadline - loop.time()
            if await stream.wait_connected(max(0.0, min(remaining, 0.1))) and stream is self._stream:
                return True
            if remaining <= 0:
                return False
        return False

    async def wait_synced(self, timeout: float) -> None:
        """Wait until the pool holds this server's state: the resync the stream starts when it
        connects, or, if that has not happened within ``timeout``, one read here (the stream
        may be slow or refused; the sessions and requests must show all the same)."""

        async def synced_within(seconds: float) -> bool:
            try:
                async with asyncio.timeout(seconds):
                    await self._synced.wait()
                return True
            except TimeoutError:
                return False

        if await synced_within(timeout):
            return
        # A connected stream's resync is under way (a big server, a loaded machine): a second
        # read would only double it. Unless that one failed: then read here after all.
        stream = self._stream
        if stream is not None and stream.connected and await synced_within(3 * timeout):
            return
        await self.resync()

    async def resync(self, client: OpenCodeClient | None = None) -> None:
        """Re-read sessions, statuses and pending requests (after every (re)connect)."""
        if client is None:
            snapshot = self._stream_snapshot
            if snapshot is None:
                return
            client = snapshot.client
        if self.spec.every_directory:
            await self._resync_every_directory(client)
        else:
            # Each part on its own: OpenCode 1.18.33 answers GET /permission with HTTP 400 while a
            # webfetch permission is pending (its metadata does not serialize), and that must not
            # cost us the sessions and statuses.
            listed_at = time.monotonic()
            sessions, statuses, permissions, questions = await _gather_parts(
                client.list_sessions(limit=RESYNC_SESSION_LIMIT),
                client.session_status(),
                client.permissions(),
                client.questions(),
            )
            if sessions is not None:
                self.pool.load_sessions(sessions, complete=True, server=self.name, asked=listed_at)
            if statuses is not None:
                self.pool.load_statuses(statuses, server=self.name)
            self.pool.load_requests(permissions, questions, server=self.name, asked=listed_at)
        self.pool.resyncs += 1
        self._synced.set()

    async def _resync_every_directory(self, client: OpenCodeClient) -> None:
        """The resync of a pool following every directory: every project's sessions, then each
        live directory's statuses and requests (OpenCode keeps them per directory instance).

        Everything is loaded into the pool at once, after the last read: a session is drawn once,
        with its status, rather than first idle and then again busy a moment later.
        """
        listed_at = time.monotonic()
        (sessions,) = await _gather_parts(client.all_sessions(limit=RESYNC_SESSION_LIMIT))
        directories = self.resync_directories(sessions or ())
        gate = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(directory: str) -> tuple[object, ...]:
            scoped = client.at(directory)
            async with gate:
                return await _gather_parts(scoped.session_status(), scoped.permissions(), scoped.questions())

        parts = await asyncio.gather(*(one(d) for d in directories))
        statuses: dict[str, SessionStatus] = {}
        permissions: list[PermissionRequest] = []
        questions: list[QuestionRequest] = []
        covered: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        for directory, (status_map, perms, asked) in zip(directories, parts, strict=True):
            if isinstance(status_map, dict):
                statuses.update(status_map)
                covered[0].add(directory)
            if isinstance(perms, list):
                permissions.extend(perms)
                covered[1].add(directory)
            if isinstance(asked, list):
                questions.extend(asked)
                covered[2].add(directory)
        if sessions is not None:
            self.pool.load_sessions(sessions, complete=True, server=self.name, asked=listed_at)
        self.pool.load_statuses(statuses, directories=covered[0], server=self.name)
        self.pool.load_requests(
            permissions,
            questions,
            permission_directories=covered[1],
            question_directories=covered[2],
            server=self.name,
            asked=listed_at,
        )

    def _apply(self, directory: str | None, event: Any) -> None:
        self.pool.apply(directory, event, self.name)

    async def stop(self) -> None:
        """Stop listening (the handle is the owner's to close)."""
        if self._recovery is not None:
            self._recovery.cancel()
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None


async def _gather_parts(*parts: Awaitable[Any]) -> list[Any]:
    """Run REST reads together; each one that fails with an OpenCode error is logged and None.

    A resync is made of independent parts, and one refused (OpenCode 1.18.33 answers
    ``GET /permission`` with HTTP 400 while a webfetch permission is pending) must not cost the
    others. Anything but an OpenCode error is a bug and propagates.
    """
    results = await asyncio.gather(*parts, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, OpenCodeError):
            raise result
        if isinstance(result, OpenCodeError):
            log.warning("pool resync incomplete: %s", result)
    return [None if isinstance(result, BaseException) else result for result in results]


