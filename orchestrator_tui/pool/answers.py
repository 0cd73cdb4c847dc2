"""Answering one permission or question request: the one path every front end takes.

The dashboard (a human), the MCP worker (the agent) and the rule engine (a rule) answer the
same requests, possibly at the same moment and from different processes. Each answer goes:

1. claim the request in the pool's registry: exactly one claim per request wins, in any process;
2. send the reply to OpenCode;
3. on failure give the claim back, so that someone may answer again;
4. resolve the request in this process's pool (the inbox drops it at once);
5. record the decision in the audit log (a failure there never undoes the reply).

:func:`answer` does exactly that and returns a typed :data:`Outcome`, never an exception for
what can happen to an answer: a lost race is :class:`AlreadyAnswered` (by whom, how, when), a
request OpenCode no longer has is :class:`Gone` (and whether it went with a server that stopped),
and everything else is :class:`Failed` with its cause and the fix. Each caller turns the outcome
into its own words in one place; nothing reads an error's text to learn what happened.

Whether the caller *may* answer (the approval policy, waiting for a human) is the caller's
business, decided before it calls :func:`answer`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Claim, Registry, database_problem
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import LostRequest, Pool

log = logging.getLogger(__name__)

Kind = Literal["permission", "question"]
#: What stopped an answer: the registry (the claim), the server (not reachable), or OpenCode (the reply).
Cause = Literal["registry", "server", "opencode"]

#: What to do after an answer that did not go through: its claim was given back.
ANSWER_AGAIN = "answer it again (the request is still waiting)"


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send to one request, and what the audit log keeps of it.

    Build one with :meth:`permission` or :meth:`question`.
    """

    request_id: str
    #: The request's session ("" when the front end does not know the request).
    session_id: str
    kind: Kind
    #: ``once``/``always``/``reject`` for a permission, ``reply``/``reject`` for a question.
    decision: str
    #: A permission reply's message to the agent.
    message: str | None = None
    #: A question's answers, one list of labels per question (a reply only).
    answers: tuple[tuple[str, ...], ...] = ()
    #: What the decision log keeps besides the decision.
    detail: Mapping[str, Any] | None = None

    @classmethod
    def permission(
        cls,
        request_id: str,
        reply: str,
        message: str | None = None,
        *,
        request: PermissionRequest | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Answer:
        """A permission reply; ``request`` (when known) and ``extra`` go into the decision log."""
        detail: dict[str, Any] = {}
        if request is not None:
            detail = {"permission": request.permission, "patterns": request.patterns}
            if reply == "always":
                detail["always"] = request.always
        if message:
            detail["message"] = message
        detail.update(extra or {})
        return cls(
            request_id,
            request.sessionID if request is not None else "",
            "permission",
            reply,
            message=message or None,
            detail=detail,
        )

    @classmethod
    def question(
        cls, request_id: str, answers: Sequence[Sequence[str]] | None, *, request: QuestionRequest | None = None
    ) -> Answer:
        """A question's answers, or its rejection when ``answers`` is None."""
        session_id = request.sessionID if request is not None else ""
        if answers is None:
            return cls(request_id, session_id, "question", "reject")
        chosen = tuple(tuple(a) for a in answers)
        return cls(
            request_id, session_id, "question", "reply", answers=chosen, detail={"answers": [list(a) for a in chosen]}
        )

    async def send(self, client: OpenCodeClient) -> None:
        if self.kind == "permission":
            await client.reply_permission(self.request_id, self.decision, self.message)
        elif self.decision == "reject":
            await client.reject_question(self.request_id)
        else:
            await client.reply_question(self.request_id, self.answers)


@dataclass(frozen=True, slots=True)
class Answerer:
    """Who answers: what the claim and the decision log record."""

    #: ``human``, ``agent``, or a rule (``rule #3``).
    decided_by: str
    #: The front end it came through: ``dashboard``, ``mcp``, ``rule``.
    channel: str
    #: The client: the MCP client's name, the dashboard, or the front end that applied a rule.
    client_name: str | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    """The reply reached OpenCode, and is recorded."""

    answer: Answer


@dataclass(frozen=True, slots=True)
class AlreadyAnswered:
    """Someone else claimed the request first: the claim says who, how and when."""

    claim: Claim


@dataclass(frozen=True, slots=True)
class Gone:
    """OpenCode no longer has the request: answered outside the pool, its session deleted, or lost.

    Nothing was sent (or OpenCode answered 404), and nobody in the pool claimed it.
    """

    request_id: str
    #: Set when the request went away with an OpenCode server that stopped (it keeps requests in
    #: memory only): nobody answered it, and the tool call that asked was interrupted.
    lost: LostRequest | None = None
    #: OpenCode's 404 when the reply itself found the request gone (None: it was not pending).
    error: HttpStatusError | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The answer did not go through; the claim was given back, so the request is still open."""

    cause: Cause
    #: The typed error: ``sqlite3.Error`` (registry), ``ServerUnavailable`` (server) or
    #: ``OpenCodeError`` (opencode); its ``str()`` is the problem.
    error: Exception
    #: What the person (or the agent) can do about it.
    fix: str

    @property
    def problem(self) -> str:
        return str(self.error)


Outcome = Answered | AlreadyAnswered | Gone | Failed
#: Every outcome but success: what a caller turns into its own words.
Refusal = AlreadyAnswered | Gone | Failed


def _lost(pool: Pool, request_id: str) -> LostRequest | None:
    """The request, if it went away with a server that stopped (and is not pending again)."""
    if request_id in pool.permissions or request_id in pool.questions:
        return None
    return pool.lost.get(request_id)


def settled(pool: Pool, registry: Registry | None, request_id: str) -> AlreadyAnswered | Gone:
    """What became of a request that is not pending: who answered it, else that it is gone."""
    if registry is not None:
        try:
            claim = registry.claim_of(request_id)
        except sqlite3.Error:  # unknown who answered; that it is not pending is still true
            log.warning("could not read the claim of %s", request_id, exc_info=True)
            claim = None
        if claim is not None:
            return AlreadyAnswered(claim)
    return Gone(request_id, lost=_lost(pool, request_id))


async def answer(service: PoolService, registry: Registry | None, what: Answer, by: Answerer) -> Outcome:
    """Claim, send, release on failure, resolve, record: see the module docstring.

    Without a registry (a front end running on its own) there is nobody to race, so nothing is
    claimed or recorded. A cancellation mid-reply gives the claim back and propagates.
    """
    pool = service.pool
    rid = what.request_id
    lost = _lost(pool, rid)
    if lost is not None:
        return Gone(rid, lost=lost)
    if registry is not None:
        try:
            winner = registry.claim(
                rid,
                session_id=what.session_id,
                decision=what.decision,
                decided_by=by.decided_by,
                channel=by.channel,
                client_name=by.client_name,
            )
        except sqlite3.Error as exc:
            return Failed("registry", exc, database_problem(registry.path, exc).fix)
        if winner is not None:
            return AlreadyAnswered(winner)
    try:
        client = await service.acquire_for(what.session_id)
        await what.send(client)
    except BaseException as exc:
        if registry is not None:
            registry.release_claim(rid)
        if isinstance(exc, ServerUnavailable):
            return Failed("server", exc, exc.fix or ANSWER_AGAIN)
        if isinstance(exc, HttpStatusError) and exc.status == 404:
            pool.resolve_request(rid)
            return Gone(rid, lost=_lost(pool, rid), error=exc)
        if isinstance(exc, OpenCodeError):
            return Failed("opencode", exc, ANSWER_AGAIN)
        raise
    pool.resolve_request(rid)
    if registry is not None:
        try:
            registry.record_decision(
                request_id=rid,
                session_id=what.session_id,
                kind=what.kind,
                decision=what.decision,
                decided_by=by.decided_by,
                channel=by.channel,
                detail=what.detail,
                client_name=by.client_name,
            )
        except Exception:  # the reply already happened; the audit trail must not undo it
            log.exception("could not record the decision for %s", rid)
    return Answered(what)
