"""Answering requests from the dashboard: permissions (one or all marked), questions, rules.

A key answers only what the human has seen: the request drawn under the cursor (or, for a
batch, the marked requests drawn in the list) for at least SETTLE_SECONDS when the key was
pressed. Each action reads that synchronously, while its key is being handled; the dialogs
that follow (workers) get the requests it captured, never what is highlighted later.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import App

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.actions import ActionError
from orchestrator_tui.pool.answers import AlreadyAnswered, Gone
from orchestrator_tui.tui.render import (
    permission_summary,
    permission_title,
)
from orchestrator_tui.tui.safe import shown, visible
from orchestrator_tui.tui.screens import (
    ConfirmScreen,
    MakeRuleScreen,
    QuestionScreen,
    TextPromptScreen,
)
from orchestrator_tui.tui.widgets import SETTLE_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.state import Pool
    from orchestrator_tui.tui.widgets import Inbox


log = logging.getLogger(__name__)

REPLY_WORDS = {"once": "Allowed once", "always": "Allowed always", "reject": "Rejected"}


class Answering(App[None]):
    """Mixed into :class:`~orchestrator_tui.tui.app.DashboardApp`: the inbox's answers, sent."""

    # The dashboard's state this part reads and writes (set up by DashboardApp.__init__/on_mount).
    pool: Pool
    actions_: PoolActions
    inbox: Inbox
    _answering: set[str]
    _too_soon_said: float
    _session_title: Callable[[str], str]

    def _pending_request(self, key: Inbox.KeyPressed) -> PermissionRequest | QuestionRequest | None:
        """The request that was under the cursor when the key was pressed, if still pending."""
        rid = key.request_id
        if rid is None:
            return None
        return self.pool.permissions.get(rid) or self.pool.questions.get(rid)

    def _request_to_answer(self, key: Inbox.KeyPressed) -> PermissionRequest | QuestionRequest | None:
        """The highlighted request, if this key may act on it; None (and why, on screen) if not."""
        request = self._pending_request(key)
        if request is None:
            self.notify("Nothing is waiting for an answer.")
            return None
        if request.id in self._answering:
            return None  # a press on a request already being answered: the first one counts
        at = key.at
        if not self.inbox.seen_under_cursor(request.id, at):
            self.inbox.too_soon([request.id], at)
            self._too_soon("A new request just moved under the cursor: look at it, then press again.")
            return None
        return request

    def _too_soon(self, message: str) -> None:
        """Say why a key did nothing — once per burst of early presses, not once per press."""
        now = time.monotonic()
        if now - self._too_soon_said > 3.0:
            self.notify(
                f"{message}\n(Keys pressed less than {SETTLE_SECONDS:g} s after a request appears do not answer it.)",
                title="Not answered",
                severity="warning",
                timeout=4,
                markup=False,
            )
        self._too_soon_said = now

    def _marked_permissions(self, key: Inbox.KeyPressed) -> list[PermissionRequest]:
        """The marked requests still pending, in inbox order (marks of answered ones are gone)."""
        return [p for rid in key.marked if (p := self.pool.permissions.get(rid)) is not None]

    def _marked_to_answer(self, marked: list[PermissionRequest], at: float) -> list[PermissionRequest]:
        """The marked requests this key may answer: each one drawn in the list long enough."""
        fresh = [p for p in marked if p.id not in self._answering]
        early = [p.id for p in fresh if not self.inbox.seen_listed(p.id, at)]
        if early:
            self.inbox.too_soon(early, at)
            few = "1 marked request was" if len(early) == 1 else f"{len(early)} marked requests were"
            self._too_soon(f"{few} listed just now and not answered: look at them, then press again.")
        return [p for p in fresh if p.id not in early]

    def on_inbox_permission(self, key: Inbox.Permission) -> None:
        """Answer the highlighted permission, or every marked one when some are marked."""
        reply = key.reply
        marked = self._marked_permissions(key)
        if marked:
            ready = self._marked_to_answer(marked, key.at)
            if not ready:
                return
            if reply == "always":
                self._allow_always(ready, batch=True)
            else:
                self._reply_permissions(ready, reply, None)
            return
        request = self._request_to_answer(key)
        if request is None:
            return
        if isinstance(request, QuestionRequest):
            self._question_dialog(request)
        elif reply == "always":
            self._allow_always([request], batch=False)
        else:
            self._reply_permission(request, reply, None)

    @work(group="dialog", exclusive=True)
    async def _allow_always(self, requests: list[PermissionRequest], *, batch: bool) -> None:
        """Ask before "always": it lists every pattern OpenCode will stop asking about."""
        patterns = list(dict.fromkeys(p for r in requests for p in (r.always or r.patterns)))
        kinds = list(dict.fromkeys(permission_title(r) for r in requests))
        what = kinds[0] if len(kinds) == 1 else ", ".join(kinds)
        count = f" ({len(requests)} requests)" if len(requests) > 1 else ""
        body = Text.assemble(
            (f"{what}{count} — allow from now on, for the rest of this server's life:\n\n", ""),
            *[Text.assemble(shown(f"  • {p}", "bold"), "\n") for p in patterns],
            ("\nOpenCode will not ask again for anything matching these patterns.", "dim"),
        )
        if not await self.push_screen_wait(ConfirmScreen("Allow always?", body, "Allow always")):
            return
        if batch:
            self._reply_permissions(requests, "always", None)
        else:
            self._reply_permission(requests[0], "always", None)

    def _not_sent(self, what: str, session_id: str, exc: ActionError) -> None:
        """Say why an answer did not go through; losing a race to another answer is not an error."""
        where = f"{what} · {self._session_title(session_id)}"
        error = visible(_refusal_line(exc), multiline=True)
        if _raced(exc):
            self.notify(
                f"{where}\n{error[0].upper()}{error[1:]}",
                title="Already answered",
                severity="warning",
                timeout=8,
                markup=False,
            )
        else:
            self.notify(f"{where}\n{error}", title="Not sent", severity="error", timeout=8, markup=False)

    def _reply_permission(self, request: PermissionRequest, reply: str, message: str | None) -> None:
        self._answering.add(request.id)  # now, while the key is handled: the next press sees it
        self._send_permission(request, reply, message)

    @work(group="reply")
    async def _send_permission(self, request: PermissionRequest, reply: str, message: str | None) -> None:
        try:
            await self.actions_.reply_permission(request.id, reply, message)
        except ActionError as exc:
            self._answering.discard(request.id)
            self._not_sent(permission_title(request), request.sessionID, exc)
            return
        self.notify(f"{REPLY_WORDS[reply]}: {permission_title(request)}", timeout=3, markup=False)

    def _reply_permissions(self, requests: list[PermissionRequest], reply: str, message: str | None) -> None:
        self._answering.update(r.id for r in requests)
        self._send_permissions(requests, reply, message)

    @work(group="reply")
    async def _send_permissions(self, requests: list[PermissionRequest], reply: str, message: str | None) -> None:
        """One answer to several requests; one notice for what went through, one for what did not."""
        ids = [r.id for r in requests]
        by_id = {r.id: r for r in requests}
        try:
            results = list(await self.actions_.reply_permissions(ids, reply, message))
        except ActionError as exc:
            results = [(rid, exc) for rid in ids]
        done = [rid for rid, error in results if error is None]
        failed = [(rid, error) for rid, error in results if error is not None]
        self._answering.difference_update(rid for rid, _ in failed)
        self.inbox.set_marks(self.inbox.marked - set(done))
        if done:
            plural = "request" if len(done) == 1 else "requests"
            self.notify(f"{REPLY_WORDS[reply]}: {len(done)} {plural}", timeout=4)
        if failed:
            lines = []
            for rid, error in failed:
                request = by_id.get(rid)
                who = self._session_title(request.sessionID) if request else rid
                lines.append(f"• {who}: {visible(_refusal_line(error), multiline=True)}")
            races = all(_raced(error) for _, error in failed)
            self.notify(
                "\n".join(lines),
                title=f"{len(failed)} not sent" + (" — already answered" if races else ""),
                severity="warning" if races else "error",
                timeout=10,
                markup=False,
            )

    def on_inbox_reject(self, key: Inbox.Reject) -> None:
        marked = self._marked_permissions(key)
        if marked:
            ready = self._marked_to_answer(marked, key.at)
            if ready:
                self._reject_dialog(ready, batch=True)
            return
        request = self._request_to_answer(key)
        if request is None:
            return
        if isinstance(request, QuestionRequest):
            self._answering.add(request.id)
            self._answer_question(request, ("reject", []))
            return
        self._reject_dialog([request], batch=False)

    @work(group="dialog", exclusive=True)
    async def _reject_dialog(self, requests: list[PermissionRequest], *, batch: bool) -> None:
        """Reject the requests captured when `r` was pressed, with an optional message."""
        count = f" {len(requests)} requests" if len(requests) > 1 else ""
        message = await self.push_screen_wait(
            TextPromptScreen(
                f"Reject{count} — optional message for the agent",
                "why not / what to do instead (leave empty to just stop)",
                allow_empty=True,
                help_text="Enter rejects · with a message the agent continues with your feedback · Esc cancels",
            )
        )
        if message is None:
            return
        if batch:
            self._reply_permissions(requests, "reject", message or None)
        else:
            self._reply_permission(requests[0], "reject", message or None)

    def on_inbox_toggle_mark(self, key: Inbox.ToggleMark) -> None:
        """Mark or unmark the highlighted permission for a batch answer."""
        request = self._request_to_answer(key)
        if request is None:
            return
        if isinstance(request, QuestionRequest):
            self.notify("Only permissions can be answered together; answer questions one by one (Enter).")
            return
        self.inbox.set_marks(self.inbox.marked ^ {request.id})

    def on_inbox_mark_similar(self, pressed: Inbox.MarkSimilar) -> None:
        """Mark every listed permission that asks for exactly what the highlighted one asks for.

        Pressed again when they are all marked already, it unmarks them.
        """
        request = self._pending_request(pressed)
        if not isinstance(request, PermissionRequest):
            self.notify("Highlight a permission in the inbox first.")
            return
        if self._request_to_answer(pressed) is None:
            return
        key = self._approval_key(request)
        alike = {
            rid
            for rid, other in self.inbox.requests.items()
            if isinstance(other, PermissionRequest) and rid in self.pool.permissions
            if self._approval_key(other) == key
        }
        if alike <= self.inbox.marked:
            self.inbox.set_marks(self.inbox.marked - alike)
            return
        self.inbox.set_marks(self.inbox.marked | alike)
        self.notify(f"Marked {len(alike)} × {permission_summary(request)}", timeout=3, markup=False)

    def _approval_key(self, request: PermissionRequest) -> str:
        """Everything an answer to ``request`` approves, as one comparable value.

        Two requests are "alike" only when allowing one allows exactly what allowing the other
        does: same type, patterns and "always" patterns, same metadata (an edit's file *and*
        diff, a command, a URL), in the same directory (a command runs where its session is).
        """
        view = self.pool.sessions.get(request.sessionID)
        return json.dumps(
            {
                "permission": request.permission,
                "patterns": request.patterns,
                "always": request.always,
                "metadata": request.metadata or {},
                "directory": view.directory if view else None,
            },
            sort_keys=True,
            default=str,
        )

    def on_inbox_make_rule(self, key: Inbox.MakeRule) -> None:
        """Turn the highlighted permission into a rule the pool applies to every session."""
        request = self._pending_request(key)
        if not isinstance(request, PermissionRequest):
            self.notify(
                "Highlight a permission in the inbox first: rules answer permissions (questions need you each time)."
            )
            return
        if self._request_to_answer(key) is None:
            return
        self._make_rule_dialog(request)

    @work(group="dialog", exclusive=True)
    async def _make_rule_dialog(self, request: PermissionRequest) -> None:
        try:
            suggestions = self.actions_.rule_patterns(request.id)
        except ActionError as exc:
            self.notify(str(exc), severity="warning", markup=False)
            return
        draft = await self.push_screen_wait(
            MakeRuleScreen(
                request.permission,
                self._session_title(request.sessionID),
                Text(permission_summary(request)),
                suggestions,
                suggestions.preferred,
            )
        )
        if draft is None:
            return
        pattern, reply = draft
        self._make_rule(request, reply, pattern)

    @work(group="reply")
    async def _make_rule(self, request: PermissionRequest, reply: str, pattern: str) -> None:
        try:
            rule = await self.actions_.make_rule(request.id, reply, pattern=pattern)
        except ActionError as exc:
            self._not_sent("Rule", request.sessionID, exc)
            return
        words = {"once": "allow", "always": "allow", "reject": "reject"}.get(reply, reply)
        self.notify(
            f"Rule #{rule.id}: {words} every {visible(request.permission)} request matching {visible(pattern)}"
            " (R lists rules)",
            title="Rule made",
            timeout=6,
            markup=False,
        )

    def on_inbox_answer(self, key: Inbox.Answer) -> None:
        request = self._request_to_answer(key)
        if request is None:
            return
        if isinstance(request, PermissionRequest):
            self.notify("o allow once · a allow always · r reject · space mark · m make a rule")
            return
        self._question_dialog(request)

    @work(group="dialog", exclusive=True)
    async def _question_dialog(self, request: QuestionRequest) -> None:
        result = await self.push_screen_wait(QuestionScreen(request, self._session_title(request.sessionID)))
        if result is not None:
            self._answering.add(request.id)
            self._answer_question(request, result)

    @work(group="reply")
    async def _answer_question(self, request: QuestionRequest, result: tuple[str, list[list[str]]]) -> None:
        action, answers = result
        try:
            if action == "reply":
                await self.actions_.reply_question(request.id, answers)
            else:
                await self.actions_.reject_question(request.id)
        except ActionError as exc:
            self._answering.discard(request.id)
            self._not_sent("Question", request.sessionID, exc)
            return
        self.notify("Answer sent" if action == "reply" else "Question rejected", timeout=3)


def _raced(exc: ActionError) -> bool:
    """Whether the answer lost to another one (or to an answer outside the pool): not an error."""
    return isinstance(exc.outcome, AlreadyAnswered) or (isinstance(exc.outcome, Gone) and exc.outcome.lost is None)


def _refusal_line(exc: ActionError) -> str:
    """What a notice says of an answer that did not go through.

    A lost race names the winner as the claim describes it ("already answered by agent
    (claude-code) at 12:03:04: once"): who won, how, when.
    """
    if isinstance(exc.outcome, AlreadyAnswered):
        return exc.outcome.claim.describe()
    return str(exc)
