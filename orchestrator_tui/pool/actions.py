"""What a human does to the pool: answer requests, start, prompt, abort and delete sessions.

The dashboard calls these; each one goes to OpenCode through the current server snapshot and
leaves its trace in the registry (who launched a session, who decided a request), so both
front ends see the same history. Every answer to a request is claimed in the registry before
it is sent, so when the agent or a rule answers the same request at the same moment exactly one
reply reaches OpenCode and the loser is told who answered, how and when.

Errors come back as :class:`ActionError` with a sentence a person can act on; nothing here
raises anything else for an OpenCode failure. An answer to a request takes the pool's one answer
path (:mod:`~orchestrator_tui.pool.answers`), whose typed outcome the error carries.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeError
from orchestrator_tui.opencode.models import Agent, Command, Session
from orchestrator_tui.pool.answers import AlreadyAnswered, Answer, Answered, Answerer, Gone, Refusal, answer
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Origin, Registry, Rule
from orchestrator_tui.pool.rules import (
    RuleSuggestions,
    apply_rules,
    default_rule_pattern,
    scope_of,
    suggest_rule_patterns,
)
from orchestrator_tui.pool.service import PoolService

log = logging.getLogger(__name__)

#: The channel the audit log records a human's decisions under.
DASHBOARD_CHANNEL = "dashboard"
REPLIES = ("once", "always", "reject")


class ActionError(Exception):
    """An action failed; ``str()`` says what happened and what to do.

    ``outcome``: when an answer to a request did not go through, what happened to it (a lost
    race, a request gone, a failure), for the dashboard to choose its notice by; None otherwise.
    """

    def __init__(self, text: str, outcome: Refusal | None = None) -> None:
        super().__init__(text)
        self.outcome = outcome


def _with_fix(text: str, fix: str | None) -> str:
    return text if fix is None else f"{text}. Fix: {fix}" + ("" if fix.endswith(".") else ".")


def _words(what: Answer) -> tuple[str, str, str]:
    """(what the request is, what was sent, the verb) in the dashboard's words."""
    if what.kind == "permission":
        return "request", "reply", "reply"
    if what.decision == "reject":
        return "question", "rejection", "reject"
    return "question", "answer", "answer"


def refusal_text(outcome: Refusal, what: Answer) -> str:
    """The dashboard's words for an answer that did not go through (the one place they are made)."""
    noun, sent, verb = _words(what)
    if isinstance(outcome, AlreadyAnswered):
        return f"This {noun} was {outcome.claim.describe()}."
    if isinstance(outcome, Gone):
        if outcome.lost is not None:
            return f"This {noun} was lost: the OpenCode server that held it stopped, so nothing waits for an answer."
        return f"This {noun} was already answered elsewhere."
    if outcome.cause == "registry":
        problem = f"Could not claim the {noun} in the pool registry ({outcome.problem})"
    elif outcome.cause == "server":
        problem = f"OpenCode server unavailable: {outcome.problem}"
    elif isinstance(outcome.error, HttpStatusError):
        problem = f"OpenCode refused the {sent}: {outcome.problem}"
    else:
        problem = f"Could not reach OpenCode to {verb}: {outcome.problem}"
    return _with_fix(problem, outcome.fix)


class PoolActions:
    def __init__(
        self,
        service: PoolService,
        registry: Registry | None,
        *,
        origin: Origin = "human",
        launcher_id: str = "dashboard",
        client_name: str | None = "orchestrator-tui dashboard",
    ) -> None:
        self.service = service
        self.registry = registry
        self.origin: Origin = origin
        self.launcher_id = launcher_id
        self.client_name = client_name
        #: Who the claims and the decision log say answered.
        self.answerer = Answerer(origin, DASHBOARD_CHANNEL, client_name)

    async def _client(self, session_id: str | None = None) -> Any:
        """The client for what is done to ``session_id`` (its directory's instance), or the pool's."""
        try:
            return await self.service.acquire_for(session_id)
        except ServerUnavailable as exc:
            raise ActionError(_with_fix(f"OpenCode server unavailable: {exc}", exc.fix)) from exc

    async def _answer(self, what: Answer) -> None:
        """Answer through the pool's answer path; anything but success raises :class:`ActionError`."""
        outcome = await answer(self.service, self.registry, what, self.answerer)
        if not isinstance(outcome, Answered):
            raise ActionError(refusal_text(outcome, what), outcome)

    # ------------------------------------------------------------------ requests

    async def reply_permission(self, request_id: str, reply: str, message: str | None = None) -> None:
        """Answer a permission: ``once``, ``always`` or ``reject`` (optionally with a message)."""
        if reply not in REPLIES:
            raise ActionError(f"unknown reply {reply!r}: use once, always or reject")
        request = self.service.pool.permissions.get(request_id)
        await self._answer(Answer.permission(request_id, reply, message, request=request))

    async def reply_permissions(
        self, request_ids: Sequence[str], reply: str, message: str | None = None
    ) -> list[tuple[str, ActionError | None]]:
        """Answer several permissions alike (the inbox's batch); per id, None or why it failed.

        Each one is claimed and sent on its own, so one already answered elsewhere does not
        stop the others.
        """

        async def one(request_id: str) -> tuple[str, ActionError | None]:
            try:
                await self.reply_permission(request_id, reply, message)
            except ActionError as exc:
                return request_id, exc
            return request_id, None

        return list(await asyncio.gather(*(one(rid) for rid in request_ids)))

    async def reply_question(self, request_id: str, answers: Sequence[Sequence[str]]) -> None:
        request = self.service.pool.questions.get(request_id)
        await self._answer(Answer.question(request_id, answers, request=request))

    async def reject_question(self, request_id: str) -> None:
        request = self.service.pool.questions.get(request_id)
        await self._answer(Answer.question(request_id, None, request=request))

    # ------------------------------------------------------------------ rules

    def _rules_registry(self) -> Registry:
        if self.registry is None:
            raise ActionError("Rules need the pool registry, and this dashboard runs without one.")
        return self.registry

    async def make_rule(self, request_id: str, reply: str, pattern: str | None = None) -> Rule:
        """Answer a pending permission and turn the answer into a rule for every session.

        The rule takes the request's permission type and ``pattern`` (default: see
        :func:`~orchestrator_tui.pool.rules.default_rule_pattern`). The request itself is
        answered first, as the human's decision: ``once`` for an allow, since OpenCode's
        ``always`` would grant more than the rule says and outlive its revocation (the rule does
        the remembering). Only when that worked is the rule stored, and then applied at once to
        the matching requests already pending.
        """
        registry = self._rules_registry()
        if reply not in REPLIES:
            raise ActionError(f"unknown reply {reply!r}: use once, always or reject")
        request = self.service.pool.permissions.get(request_id)
        if request is None:
            raise ActionError("This request is no longer waiting; make the rule from a pending request.")
        glob = (pattern or "").strip() or default_rule_pattern(request, scope_of(self.service.pool, request.sessionID))
        rule_reply = "reject" if reply == "reject" else "once"
        await self.reply_permission(request_id, rule_reply)
        try:
            rule = registry.add_rule(
                request.permission,
                glob,
                rule_reply,
                created_by=self.origin,
                channel=DASHBOARD_CHANNEL,
                client_name=self.client_name,
            )
        except (ValueError, sqlite3.Error) as exc:
            raise ActionError(f"The request was answered, but the rule could not be saved: {exc}") from exc
        try:
            await apply_rules(
                self.service, registry, list(self.service.pool.permissions.values()), applied_by=self.launcher_id
            )
        except sqlite3.Error:  # the rule is stored; the rule engines apply it on their next pass
            log.exception("could not apply rule #%s to the pending requests now", rule.id)
        return rule

    def revoke_rule(self, rule_id: int) -> None:
        """Stop a rule at once, in every front end of the pool; who and when go in the log."""
        registry = self._rules_registry()
        try:
            revoked = registry.revoke_rule(
                rule_id, self.origin, channel=DASHBOARD_CHANNEL, client_name=self.client_name
            )
        except sqlite3.Error as exc:
            raise ActionError(f"Could not revoke rule #{rule_id}: {exc}") from exc
        if not revoked:
            raise ActionError(f"There is no active rule #{rule_id}: it was revoked already, or never existed.")

    def rules(self) -> list[Rule]:
        """The active rules, oldest (first to apply) first."""
        return self._rules_registry().rules()

    def rule_patterns(self, request_id: str) -> RuleSuggestions:
        """Patterns a rule made from this request could use, best first, each with a label.

        The UI offers them when the human turns a decision into a rule, proposing the preferred
        one; the first one is the default :meth:`make_rule` uses.
        """
        request = self.service.pool.permissions.get(request_id)
        if request is None:
            raise ActionError("This request is no longer waiting.")
        return suggest_rule_patterns(request, scope_of(self.service.pool, request.sessionID))

    # ------------------------------------------------------------------ sessions

    async def new_session(
        self,
        prompt: str,
        *,
        title: str | None = None,
        directory: str | None = None,
        like: str | None = None,
        agent: str | None = None,
    ) -> Session:
        """Create a session and send it its first prompt (asynchronously).

        ``directory``: the project it works in (default: the pool's own directory); ``like``: a
        session whose server it is made on (default: the pool's own server); ``agent``: the
        agent the prompt goes to (default: OpenCode's default agent)."""
        text = prompt.strip()
        if not text:
            raise ActionError("A new session needs a prompt: type what the agent should do.")
        client = await self._client(like)
        if directory is not None:
            client = client.at(directory)
        try:
            session = await client.create_session(title=title)
        except OpenCodeError as exc:
            raise ActionError(f"Could not create a session: {exc}") from exc
        if self.registry is not None:
            self.registry.record_launch(session.id, self.origin, self.launcher_id, self.client_name)
        self.service.pool.load_sessions([session], server=self.service.link_of(like).name)
        await self.send_prompt(session.id, text, agent=agent)
        return session

    async def send_prompt(self, session_id: str, text: str, *, agent: str | None = None) -> None:
        """Queue a prompt; ``agent`` (None: OpenCode's default) is the agent that answers it."""
        text = text.strip()
        if not text:
            raise ActionError("Nothing to send: the prompt is empty.")
        client = await self._client(session_id)
        try:
            await client.prompt_async(session_id, text, agent=agent)
        except OpenCodeError as exc:
            raise ActionError(f"Could not send the prompt: {exc}") from exc

    async def run_command(self, session_id: str, command: str, arguments: str = "") -> None:
        """Start a command turn. OpenCode's endpoint blocks until the turn ends, so this returns
        once the command is accepted (or failed fast, e.g. an unknown command)."""
        client = await self._client(session_id)
        task = asyncio.get_running_loop().create_task(client.command(session_id, command, arguments))
        done, _ = await asyncio.wait({task}, timeout=1.0)
        if task in done:
            try:
                task.result()
            except OpenCodeError as exc:
                raise ActionError(f"Command '{command}' failed: {exc}") from exc
        else:
            # Keep it running in the background; its outcome shows up in the session's events.
            task.add_done_callback(_log_command_outcome(command))

    async def commands(self, session_id: str | None = None) -> list[Command]:
        """The commands a session can run: its own directory's (each project has its own)."""
        client = await self._client(session_id)
        try:
            return await client.commands()
        except OpenCodeError as exc:
            raise ActionError(f"Could not list commands: {exc}") from exc

    async def agents(self, session_id: str | None = None, *, directory: str | None = None) -> list[Agent]:
        """The agents a prompt can be sent to: the visible ones of the session's server and
        directory (or, for a new session, of ``session_id``'s server in ``directory``).

        OpenCode's hidden agents (its own ``title``, ``summary``, ``compaction``, or one a config
        marks hidden) are internal and left out. The agent's ``[orchestrator.agents]`` policy
        does not apply: it limits the orchestrating agent, not the human."""
        client = await self._client(session_id)
        if directory is not None:
            client = client.at(directory)
        try:
            agents = await client.agents()
        except OpenCodeError as exc:
            raise ActionError(f"Could not list agents: {exc}") from exc
        return [a for a in agents if not a.hidden]

    async def abort(self, session_id: str) -> None:
        client = await self._client(session_id)
        try:
            await client.abort_session(session_id)
        except OpenCodeError as exc:
            raise ActionError(f"Could not abort the session: {exc}") from exc

    async def delete(self, session_id: str) -> None:
        """Abort first, then delete: deleting a busy session leaves a ghost status and its
        pending permission behind (docs/opencode-behaviour.md)."""
        client = await self._client(session_id)
        try:
            await client.abort_session(session_id)
            await client.delete_session(session_id)
        except HttpStatusError as exc:
            if exc.status != 404:
                raise ActionError(f"Could not delete the session: {exc}") from exc
        except OpenCodeError as exc:
            raise ActionError(f"Could not delete the session: {exc}") from exc
        pool = self.service.pool
        for store in (pool.permissions, pool.questions):
            for rid in [rid for rid, r in store.items() if r.sessionID == session_id]:
                pool.resolve_request(rid)
        pool.forget(session_id)


def _log_command_outcome(command: str) -> Any:
    def done(task: Any) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("command %s ended with an error: %s", command, exc)

    return done
