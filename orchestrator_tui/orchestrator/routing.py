"""Which server a session lives on, for the tools: the pool's own, or one attached to it.

The agent names sessions by id only; the pool knows most sessions' servers from its resyncs,
and one it does not know yet is looked for on every server. A pool with one server routes
everything to it, exactly as before there were several.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator_tui.opencode.client import OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.models import Session, SessionStatus
from orchestrator_tui.orchestrator.errors import Internal
from orchestrator_tui.pool.handle import ServerUnavailable, Snapshot
from orchestrator_tui.pool.link import ServerLink
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where a session lives: which server, that server's snapshot, the client for the session."""

    link: ServerLink
    snapshot: Snapshot
    client: OpenCodeClient
    #: The client to use now (the server may be replaced while a run waits).
    follow: Callable[[], OpenCodeClient | None]


def looks_like_session_id(session_id: str) -> bool:
    """OpenCode 1.18.33 validates ids server-side and answers a malformed one with HTTP 500; the
    tools answer "not found" instead, as the contract intends."""
    return session_id.startswith("ses")


class Router:
    """Routes the tools' calls by session id (see the module docstring)."""

    def __init__(self, service: PoolService) -> None:
        self.service = service

    async def route(self, own: Snapshot, session_id: str | None) -> Route:
        """Where a session lives: the pool's own server (``own``), or a server attached to the pool.

        The pool knows most sessions' servers from its resyncs; one it does not know yet is
        looked for on every server (``GET /session/{id}`` answers for any project). A session of
        an attached server is driven through that server, scoped to the session's directory.
        """
        service = self.service
        link = service.link_of(session_id)
        if session_id is not None and link.primary and len(service.links) > 1:
            link = await self._find_server(session_id) or link
        if link.primary:
            return Route(link, own, own.client, lambda: self.service.client)
        try:
            snapshot = await link.acquire()
        except ServerUnavailable as exc:
            raise Internal(f"OpenCode server '{link.name}' is unavailable: {exc}") from exc
        snapshot.prefetch_model_limits()
        client = link.client_for(session_id) or snapshot.client

        def follow() -> OpenCodeClient | None:
            return link.client_for(session_id)

        return Route(link, snapshot, client, follow)

    async def _find_server(self, session_id: str) -> ServerLink | None:
        """The attached server that has ``session_id`` (None: the pool's own, or none has it)."""
        if session_id in self.service.pool.sessions or not looks_like_session_id(session_id):
            return None

        async def has(link: ServerLink) -> bool:
            try:
                await link.acquire()
                client = link.client
                if client is None:
                    return False
                session = await client.get_session(session_id)
            except (ServerUnavailable, OpenCodeError):
                return False
            self.service.pool.load_sessions([session], server=link.name)
            return True

        others = [link for link in self.service.links.values() if not link.primary]
        found = await asyncio.gather(*(has(link) for link in others))
        return next((link for link, yes in zip(others, found, strict=True) if yes), None)

    def server_name(self, session_id: str) -> str | None:
        """The server a session lives on, for the tools' output: only while the pool has several."""
        if len(self.service.links) < 2:
            return None
        return self.service.link_of(session_id).name

    async def other_servers_sessions(self, limit: int) -> list[tuple[str, list[Session], dict[str, SessionStatus]]]:
        """Each attached server's sessions, with their statuses as the pool follows them.

        A server that cannot be reached is left out (logged): one server down never fails the
        listing of the others.
        """

        async def one(link: ServerLink) -> tuple[str, list[Session], dict[str, SessionStatus]]:
            try:
                await link.acquire()
                client = link.client
                sessions = await client.all_sessions(limit=max(limit, 1)) if client is not None else []
            except (ServerUnavailable, OpenCodeError) as exc:
                log.warning("list_sessions: server %r left out: %s", link.name, exc)
                return link.name, [], {}
            pool = self.service.pool
            pool.load_sessions(sessions, server=link.name)
            statuses: dict[str, SessionStatus] = {}
            for session in sessions:
                view = pool.sessions.get(session.id)
                if view is not None and view.status is Status.BUSY:
                    statuses[session.id] = SessionStatus(type="busy")
                elif view is not None and view.status is Status.RETRY and view.retry is not None:
                    statuses[session.id] = view.retry
            return link.name, sessions, statuses

        links = [link for link in self.service.links.values() if not link.primary]
        return list(await asyncio.gather(*(one(link) for link in links)))

