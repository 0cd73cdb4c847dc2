"""What a human does to the pool: answer requests, start, prompt, abort and delete sessions.

The dashboard calls these; each one goes to OpenCode through the current server snapshot and
leaves its trace in the registry (who launched a session, who decided a request), so both
front ends see the same history. Errors come back as :class:`ActionError` with a sentence a
person can act on; nothing here raises anything else for an OpenCode failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeError
from orchestrator_tui.opencode.models import Command, Session
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Origin, Registry
from orchestrator_tui.pool.service import PoolService

log = logging.getLogger(__name__)


class ActionError(Exception):
    """An action failed; ``str()`` says what happened and what to do."""


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

    async def _client(self) -> Any:
        try:
            return (await self.service.acquire()).client
        except ServerUnavailable as exc:
            raise ActionError(f"OpenCode server unavailable: {exc}") from exc

    def _decided(self, request_id: str, session_id: str, kind: str, decision: str, detail: dict[str, Any]) -> None:
        if self.registry is None:
            return
        try:
            self.registry.record_decision(
                request_id=request_id,
                session_id=session_id,
                kind=kind,
                decision=decision,
                decided_by=self.origin,
                channel="dashboard",
                detail=detail,
                client_name=self.client_name,
            )
        except Exception:
            log.exception("could not record decision for %s", request_id)

    # ------------------------------------------------------------------ requests

    async def reply_permission(self, request_id: str, reply: str, message: str | None = None) -> None:
        """Answer a permission: ``once``, ``always`` or ``reject`` (optionally with a message)."""
        if reply not in ("once", "always", "reject"):
            raise ActionError(f"unknown reply {reply!r}: use once, always or reject")
        request = self.service.pool.permissions.get(request_id)
        client = await self._client()
        try:
            await client.reply_permission(request_id, reply, message or None)
        except HttpStatusError as exc:
            if exc.status == 404:
                self.service.pool.resolve_request(request_id)
                raise ActionError("This request was already answered elsewhere.") from exc
            raise ActionError(f"OpenCode refused the reply: {exc}") from exc
        except OpenCodeError as exc:
            raise ActionError(f"Could not reach OpenCode to reply: {exc}") from exc
        self.service.pool.resolve_request(request_id)
        detail: dict[str, Any] = {}
        if request is not None:
            detail = {"permission": request.permission, "patterns": request.patterns}
            if reply == "always":
                detail["always"] = request.always
        if message:
            detail["message"] = message
        self._decided(request_id, request.sessionID if request else "", "permission", reply, detail)

    async def reply_question(self, request_id: str, answers: Sequence[Sequence[str]]) -> None:
        request = self.service.pool.questions.get(request_id)
        client = await self._client()
        try:
            await client.reply_question(request_id, answers)
        except HttpStatusError as exc:
            if exc.status == 404:
                self.service.pool.resolve_request(request_id)
                raise ActionError("This question was already answered elsewhere.") from exc
            raise ActionError(f"OpenCode refused the answer: {exc}") from exc
        except OpenCodeError as exc:
            raise ActionError(f"Could not reach OpenCode to answer: {exc}") from exc
        self.service.pool.resolve_request(request_id)
        self._decided(
            request_id,
            request.sessionID if request else "",
            "question",
            "reply",
            {"answers": [list(a) for a in answers]},
        )

    async def reject_question(self, request_id: str) -> None:
        request = self.service.pool.questions.get(request_id)
        client = await self._client()
        try:
            await client.reject_question(request_id)
        except HttpStatusError as exc:
            if exc.status == 404:
                self.service.pool.resolve_request(request_id)
                raise ActionError("This question was already answered elsewhere.") from exc
            raise ActionError(f"OpenCode refused the rejection: {exc}") from exc
        except OpenCodeError as exc:
            raise ActionError(f"Could not reach OpenCode to reject: {exc}") from exc
        self.service.pool.resolve_request(request_id)
        self._decided(request_id, request.sessionID if request else "", "question", "reject", {})

    # ------------------------------------------------------------------ sessions

    async def new_session(self, prompt: str, *, title: str | None = None) -> Session:
        """Create a session and send it its first prompt (asynchronously)."""
        text = prompt.strip()
        if not text:
            raise ActionError("A new session needs a prompt: type what the agent should do.")
        client = await self._client()
        try:
            session = await client.create_session(title=title)
        except OpenCodeError as exc:
            raise ActionError(f"Could not create a session: {exc}") from exc
        if self.registry is not None:
            self.registry.record_launch(session.id, self.origin, self.launcher_id, self.client_name)
        self.service.pool.load_sessions([session])
        await self.send_prompt(session.id, text)
        return session

    async def send_prompt(self, session_id: str, text: str) -> None:
        text = text.strip()
        if not text:
            raise ActionError("Nothing to send: the prompt is empty.")
        client = await self._client()
        try:
            await client.prompt_async(session_id, text)
        except OpenCodeError as exc:
            raise ActionError(f"Could not send the prompt: {exc}") from exc

    async def run_command(self, session_id: str, command: str, arguments: str = "") -> None:
        """Start a command turn. OpenCode's endpoint blocks until the turn ends, so this returns
        once the command is accepted (or failed fast, e.g. an unknown command)."""
        import asyncio

        client = await self._client()
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

    async def commands(self) -> list[Command]:
        client = await self._client()
        try:
            return await client.commands()
        except OpenCodeError as exc:
            raise ActionError(f"Could not list commands: {exc}") from exc

    async def abort(self, session_id: str) -> None:
        client = await self._client()
        try:
            await client.abort_session(session_id)
        except OpenCodeError as exc:
            raise ActionError(f"Could not abort the session: {exc}") from exc

    async def delete(self, session_id: str) -> None:
        """Abort first, then delete: deleting a busy session leaves a ghost status and its
        pending permission behind (observed §0.6)."""
        client = await self._client()
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
