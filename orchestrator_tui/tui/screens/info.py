"""Screens that only inform: every key (help), and every decision taken in the pool (the log)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Label,
    Static,
)

from orchestrator_tui.pool.registry import Decision
from orchestrator_tui.tui.safe import shown, visible
from orchestrator_tui.tui.screens.table import TableScreen, clock, reply_text


class HelpScreen(ModalScreen[None]):
    """Every key: its sections come from the key table (:mod:`orchestrator_tui.tui.keys`), like the
    bindings, the footer and the palette, so it cannot go stale."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog-screen page-screen")
        self._sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help-dialog"):
            yield Label("orchestrator-tui — keys", classes="dialog-title")
            with VerticalScroll(), Horizontal(classes="help-columns"):
                # Two columns of about equal height (one on narrow terminals: styles/app.tcss).
                columns: list[list[tuple[str, list[tuple[str, str]]]]] = [[], []]
                for section in self._sections:
                    min(columns, key=lambda c: sum(len(keys) + 2 for _, keys in c)).append(section)
                for column in columns:
                    with Vertical(classes="help-column"):
                        for title, keys in column:
                            table = Table.grid(padding=(0, 2))
                            table.add_column(style="bold", no_wrap=True, min_width=10)
                            table.add_column()
                            for key, description in keys:
                                table.add_row(key, description)
                            yield Static(Text(title, style="bold underline"), classes="help-section")
                            yield Static(table)
            yield Static("Esc to close", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


class DecisionLogScreen(TableScreen):
    """The audit log: every answer to a permission or question, newest first, whoever gave it."""

    TITLE = "Decision log"
    EMPTY = "No decisions yet. Every answer — yours, an agent's, a rule's — is recorded here."
    COLUMNS = ("Time", "Session", "Request", "Decision", "By", "Channel")
    refresh_every = 1.0
    LIMIT = 500

    def __init__(self, decisions: Callable[[int], list[Decision]], session_title: Callable[[str], str]) -> None:
        super().__init__()
        self._decisions = decisions
        self._title = session_title
        self._count = 0
        self.HINT = f"Newest first · the last {self.LIMIT} decisions · refreshes every second · Esc to close"

    def load_rows(self) -> list[tuple[str, tuple[RenderableType, ...]]]:
        now = time.time()
        decisions = self._decisions(self.LIMIT)
        self._count = len(decisions)
        rows: list[tuple[str, tuple[RenderableType, ...]]] = []
        for n, d in enumerate(decisions):
            rows.append(
                (
                    f"{d.request_id}:{d.decided_at}:{n}",
                    (
                        Text(clock(d.decided_at, now), style="dim"),
                        Text(_cut(visible(self._title(d.session_id) or d.session_id or "—"), 30)),
                        _request_text(d),
                        reply_text(d.decision),
                        _decider_text(d),
                        shown(d.channel, "dim"),
                    ),
                )
            )
        return rows

    def summary(self) -> RenderableType:
        if not self._count:
            return ""
        return Text(
            f"{self._count} decision{'s' if self._count != 1 else ''}"
            + (" (the newest)" if self._count >= self.LIMIT else ""),
            style="dim",
        )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _request_text(decision: Decision) -> Text:
    """ "bash · git status" for a permission (type and patterns), "question" for a question."""
    detail = decision.detail or {}
    if decision.kind == "permission":
        permission = visible(str(detail.get("permission") or "permission"))
        patterns = detail.get("patterns") or []
        text = Text(permission, style="bold")
        if isinstance(patterns, list) and patterns:
            # Cut from the left: the end of a path or command says most ("…/api/auth.py").
            what = ", ".join(visible(str(p)) for p in patterns)
            width = max(8, 30 - len(permission))
            text.append(" · " + (what if len(what) <= width else "…" + what[-(width - 1) :]), style="dim")
        return text
    if decision.kind == "rule":
        # A rule made or revoked: "rule #3 · bash · git *" (the rule's permission and glob).
        what = f" · {detail.get('permission', '?')} · {_cut(str(detail.get('pattern', '')), 20)}"
        text = Text(decision.request_id, style="bold")
        text.append_text(shown(what, "dim"))
        return text
    return shown(decision.kind)


def _decider_text(decision: Decision) -> Text:
    """Who decided: "human", "agent (claude-code)", "rule #3" (an agent's name as it gave it, escaped)."""
    who = visible(decision.decided_by)
    if who == "agent":
        client = f" ({visible(decision.client_name)})" if decision.client_name else ""
        return Text.assemble(("agent", "bold"), (client, ""))
    if who.startswith("rule"):
        return Text(who, style="italic")
    return Text(who)
