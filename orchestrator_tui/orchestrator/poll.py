"""The REST safety net under every run, beside the event stream.

The stream can miss things (a reconnect replays nothing; a dead stream says nothing), so a
waiting run also looks by REST once a second: pending permissions, pending questions, session
statuses. :class:`SharedPoll` makes that one round a second per server, whatever the number of
runs; :func:`list_permissions` is the permission list with its fallback, for the poll and for a
run's preflight alike.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest, SessionStatus
from orchestrator_tui.pool.state import Pool

log = logging.getLogger(__name__)

#: Seconds between poll rounds; runs tick on a common grid of this step so they share a round.
POLL_INTERVAL = 1.0
#: Per-request budget of the poll's REST calls: a wedged server must not stall the loop.
POLL_REQUEST_TIMEOUT = 10.0


async def list_permissions(
    client: OpenCodeClient, pool: Pool, *, timeout: float | None = None
) -> tuple[list[PermissionRequest], HttpStatusError | None]:
    """``GET /permission``, or the pool's view when OpenCode cannot list them.

    OpenCode 1.18.33 answers HTTP 400 for the whole list while one pending request has
    metadata it cannot serialize (a ``webfetch`` permission does this). The 0.7.x reference
    tolerates that; so do we, falling back to the requests the event stream told us about.
    The second item is OpenCode's 400 when the fallback was used (the warnings quote it), else None.
    """
    try:
        return await client.permissions(timeout=timeout), None
    except HttpStatusError as exc:
        if exc.status != 400:
            raise
        log.warning("GET /permission failed (%s); using the pool's pending permissions", exc)
        return list(pool.permissions.values()), exc


@dataclass(frozen=True, slots=True)
class PollResult:
    """One round of the REST safety net; None for a list OpenCode did not give."""

    #: Loop time at which the round started, before any of its requests was sent.
    started: float
    permissions: list[PermissionRequest] | None
    questions: list[QuestionRequest] | None
    statuses: dict[str, SessionStatus] | None


class SharedPoll:
    """The 1 s REST safety net, one round at a time for every run on the same server.

    Each waiting run used to send its own three requests a second: 200 concurrent runs made
    600 a second, which cost OpenCode (one JavaScript thread, also running the turns) and this
    process more than the turns themselves. Runs now tick on a common one-second grid and
    join the round in flight, so the requests are three a second whatever the number of runs.
    A run only joins a round that started after its own dispatch (never an answer from before
    its work was sent), and knows when the round started (an idle it reports is no older).
    """

    def __init__(self, client: OpenCodeClient, pool: Pool) -> None:
        self.client = client
        self.pool = pool
        self._round: tuple[float, asyncio.Task[PollResult]] | None = None

    @classmethod
    def of(cls, client: OpenCodeClient, pool: Pool) -> SharedPoll:
        poll = _SHARED_POLLS.get(client)
        if poll is None or poll.pool is not pool:
            poll = _SHARED_POLLS[client] = cls(client, pool)
        return poll

    async def get(self, since: float) -> PollResult:
        """A round that started at or after ``since`` and this tick: in flight or just done, or a new one."""
        current = self._round
        loop = asyncio.get_running_loop()
        if current is None or current[0] < since or loop.time() - current[0] >= POLL_INTERVAL / 2:
            started = loop.time()
            current = self._round = (started, loop.create_task(self._fetch(started)))
        # One caller giving up (a cancelled run) must not cancel the round for the others.
        return await asyncio.shield(current[1])

    async def _fetch(self, started: float) -> PollResult:
        client = self.client
        permissions: list[PermissionRequest] | None = None
        questions: list[QuestionRequest] | None = None
        statuses: dict[str, SessionStatus] | None = None
        try:
            permissions, _ = await list_permissions(client, self.pool, timeout=POLL_REQUEST_TIMEOUT)
        except OpenCodeError as exc:
            log.warning("poll: listing permissions failed: %s", exc)
        try:
            questions = await client.questions(timeout=POLL_REQUEST_TIMEOUT)
        except OpenCodeError as exc:
            log.warning("poll: listing questions failed: %s", exc)
        try:
            statuses = await client.session_status(timeout=POLL_REQUEST_TIMEOUT)
        except OpenCodeError as exc:
            log.warning("poll: session status failed: %s", exc)
        return PollResult(started, permissions, questions, statuses)


_SHARED_POLLS: weakref.WeakKeyDictionary[OpenCodeClient, SharedPoll] = weakref.WeakKeyDictionary()
