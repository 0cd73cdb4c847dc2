"""The dashboard's panes: server status line, session detail, approvals inbox."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.state import SessionView, ToolCall
from orchestrator_tui.tui.render import (
    permission_summary,
    question_summary,
    render_permission,
    render_question,
)
from orchestrator_tui.tui.session_list import GLYPHS, Row, age


@dataclass(frozen=True)
class ServerState:
    mode: str = "managed"  # managed | attached
    url: str = ""
    version: str = ""
    stream: str = "connecting"  # connecting | connected | disconnected | down
    detail: str = ""
    waiting: int = 0
    sessions: int = 0
    #: MCP workers (agents) attached to the pool right now (registry members).
    agents: int = 0


class StatusLine(Static):
    """One line: is it live, how many sessions and requests, which server.

    The most urgent facts come first, so a narrow terminal cuts the server URL, not the count
    of requests waiting (styles/app.tcss keeps the line unwrapped, with an ellipsis).
    """

    def show(self, state: ServerState) -> None:
        text = Text()
        text.append(" orchestrator-tui ", style="bold reverse")
        text.append("  ")
        if state.stream == "down":
            text.append("✗ OpenCode unavailable", style="bold red")
            text.append(f"  {state.detail}", style="red")
            self.update(text, layout=False)
            return
        live = {
            "connected": ("● live", "green"),
            "connecting": ("◌ connecting", "yellow"),
            "disconnected": ("◌ reconnecting", "yellow"),
            "stopped": ("◌ stopped", "yellow"),
        }.get(state.stream, (state.stream, "yellow"))
        text.append(live[0], style=live[1])
        if state.stream == "disconnected" and state.detail:
            text.append(f" ({state.detail})", style="dim")
        text.append(f"  · {state.sessions} session{'s' if state.sessions != 1 else ''}", style="dim")
        if state.agents:
            text.append(f"  · {state.agents} agent{'s' if state.agents != 1 else ''}", style="bold")
        else:
            text.append("  · no agents", style="dim")
        if state.waiting:
            text.append(f"  ◆ {state.waiting} waiting", style="bold magenta")
        else:
            text.append("  nothing waiting", style="dim")
        what = "managed" if state.mode == "managed" else "attached"
        text.append("   ")
        text.append(f"{what} OpenCode {state.version}".strip(), style="bold")
        if state.url:
            text.append(f"  {state.url}", style="dim")
        self.update(text, layout=False)  # always one line: no layout pass needed


def _duration(call: ToolCall) -> str:
    if call.started_at and call.completed_at:
        took = call.completed_at - call.started_at
        return f"{took}ms" if took < 1000 else f"{took / 1000:.1f}s"
    if call.started_at:
        return f"{time.time() - call.started_at / 1000:.0f}s…"
    return ""


TOOL_STATE_STYLE = {"completed": "green", "error": "red", "running": "yellow", "pending": "dim"}


class DetailPane(Vertical):
    """The selected session: facts, tool-call timeline, and its streamed text as it arrives."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-info")
        yield Static(id="detail-tools")
        yield TextArea(
            id="detail-output",
            read_only=True,
            soft_wrap=True,
            show_line_numbers=False,
            highlight_cursor_line=False,
        )

    def on_mount(self) -> None:
        self._session_id: str | None = None
        self._message_id: str | None = None
        self._shown_text = ""
        self._follow_pending = False
        self.query_one("#detail-output", TextArea).border_title = "Output"
        self.query_one("#detail-tools", Static).border_title = "Tool calls"
        self.show(None, None, [], 0)

    def show(
        self,
        view: SessionView | None,
        row: Row | None,
        pending: list[str],
        pending_messages: int,
        *,
        client_version: str | None = None,
    ) -> None:
        """Show one session (None: the empty state); ``client_version`` is the launching agent's."""
        info = self.query_one("#detail-info", Static)
        tools = self.query_one("#detail-tools", Static)
        # Without a session the info (or a connection error) gets the whole pane.
        self.set_class(view is None or row is None, "-empty")
        if view is None or row is None:
            info.update(Text("No session selected.\n\nPress n to start one, ? for help.", style="dim"), layout=False)
            tools.update("", layout=False)
            self._set_text(None, "", "")
            return
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column()
        status = Text(f"{GLYPHS.get(row.state, '?')} {row.state}", style="bold")
        if view.retry is not None:
            status.append(f"  attempt {view.retry.attempt}: {view.retry.message or ''}", style="yellow")
        table.add_row("Session", Text(row.title or view.id, style="bold"))
        table.add_row("Id", view.id)
        table.add_row("Status", status)
        origin = Text(row.origin_label)
        if row.origin == "agent" and row.client and client_version:
            origin.append(f" {client_version}", style="dim")
        table.add_row("From", origin)
        table.add_row("Directory", (view.directory or "") + (f"  ({row.path})" if row.path else ""))
        waiting = [*pending, *([f"{pending_messages} queued message(s)"] if pending_messages else [])]
        table.add_row(
            "Pending",
            Text("◆ " + ", ".join(waiting), style="bold magenta") if waiting else Text("nothing", style="dim"),
        )
        last = view.last_activity or row.updated
        table.add_row("Activity", "—" if not last else "just now" if age(last) == "now" else f"{age(last)} ago")
        if row.tokens:
            table.add_row("Usage", f"{row.tokens:,} tokens · ${row.cost:.4f}")
        if view.last_error and row.state == "error":
            error = view.last_error
            data = error.get("data") if isinstance(error.get("data"), dict) else {}
            message = data.get("message") if isinstance(data, dict) else None
            table.add_row("Error", Text(f"{error.get('name', 'error')}: {message or ''}", style="red"))
        # Both panes have fixed heights (styles/app.tcss), so updates skip the layout pass:
        # moving the cursor through 10,000 sessions must not re-layout the screen each time.
        info.update(table, layout=False)
        calls = list(view.tool_calls.values())[-6:]  # what fits in the pane's fixed height
        if calls:
            timeline = Table.grid(padding=(0, 1))
            for call in reversed(calls):
                label = call.title or _tool_input(call)
                timeline.add_row(
                    Text(call.status, style=TOOL_STATE_STYLE.get(call.status, "")),
                    Text(call.tool, style="bold"),
                    Text(label[:80], style="dim"),
                    Text(_duration(call), style="dim"),
                )
            tools.update(timeline, layout=False)
        else:
            tools.update(Text("no tool calls yet", style="dim"), layout=False)
        self._set_text(view.id, view.text_message_id or "", view.text)

    def _set_text(self, session_id: str | None, message_id: str, text: str) -> None:
        """Append only what is new; start over when the session or message changes."""
        output = self.query_one("#detail-output", TextArea)
        if session_id != self._session_id or message_id != self._message_id or not text.startswith(self._shown_text):
            output.load_text(text)
            self._shown_text = text
            self._session_id = session_id
            self._message_id = message_id
            self._follow(output)
            return
        tail = text[len(self._shown_text) :]
        if tail:
            # Follow the stream only when the reader is at the bottom already. A scroll to the
            # end we asked for is applied after the next refresh: until then, chunks arriving in
            # between must not read the old position as "the reader scrolled up".
            at_end = self._follow_pending or output.scroll_y >= output.max_scroll_y - 1
            output.insert(tail, output.document.end)
            self._shown_text = text
            if at_end:
                self._follow(output)

    def _follow(self, output: TextArea) -> None:
        self._follow_pending = True
        output.scroll_end(animate=False, on_complete=self._followed)

    def _followed(self) -> None:
        self._follow_pending = False
        # A scroll asked for before the text was laid out lands short of the end: once more.
        output = self.query_one("#detail-output", TextArea)
        if output.scroll_y < output.max_scroll_y:
            output.scroll_end(animate=False)


def _tool_input(call: ToolCall) -> str:
    data = call.input or {}
    for key in ("command", "filePath", "path", "pattern", "url", "description"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


class Inbox(Horizontal):
    """Every pending permission and question across the pool, oldest first.

    Permissions can be *marked* (``space``, ``*``) so one key answers several at once; a mark
    lives exactly as long as its request: when the request goes (answered here, by an agent,
    by a rule), so does the mark.
    """

    class Changed(Message):
        """The highlighted request changed (None when the inbox is empty)."""

        def __init__(self, request_id: str | None) -> None:
            self.request_id = request_id
            super().__init__()

    def compose(self) -> ComposeResult:
        yield OptionList(id="inbox-list")
        with VerticalScroll(id="inbox-view-scroll"):
            yield Static(id="inbox-view")

    def on_mount(self) -> None:
        self.requests: dict[str, PermissionRequest | QuestionRequest] = {}
        self.titles: dict[str, str] = {}
        self.marked: set[str] = set()
        # The title (with the count) goes on the inbox's own border: the list inside has none.
        self.border_title = "Waiting for you"
        self.add_class("-empty")
        self._render_view(None)

    @property
    def highlighted_id(self) -> str | None:
        option_list = self.query_one("#inbox-list", OptionList)
        if option_list.highlighted is None or option_list.option_count == 0:
            return None
        return option_list.get_option_at_index(option_list.highlighted).id

    @property
    def marked_ids(self) -> list[str]:
        """The marked requests, in inbox order (oldest first)."""
        return [rid for rid in self.requests if rid in self.marked]

    def update_requests(self, requests: list[PermissionRequest | QuestionRequest], titles: dict[str, str]) -> None:
        option_list = self.query_one("#inbox-list", OptionList)
        keep = self.highlighted_id
        new_ids = [r.id for r in requests]
        if new_ids == list(self.requests) and titles == self.titles:
            return
        self.requests = {r.id: r for r in requests}
        self.titles = titles
        self.marked &= set(new_ids)
        option_list.clear_options()
        option_list.add_options([Option(self._prompt(request), id=request.id) for request in requests])
        self._refresh_title()
        self.set_class(not requests, "-empty")  # nothing waiting: the inbox shrinks to one line
        if requests:
            index = new_ids.index(keep) if keep in new_ids else 0
            option_list.highlighted = index
        self._render_view(self.highlighted_id)

    def _prompt(self, request: PermissionRequest | QuestionRequest) -> Text:
        summary = permission_summary(request) if isinstance(request, PermissionRequest) else question_summary(request)
        title = self.titles.get(request.sessionID) or request.sessionID
        # Two lines, never wrapped (styles/app.tcss: nowrap + ellipsis): who, then what.
        mark = ("✔ ", "bold green") if request.id in self.marked else ("◆ ", "magenta")
        return Text.assemble(mark, (title, "bold"), "\n  ", summary)

    def _refresh_title(self) -> None:
        count = len(self.requests)
        title = f"Waiting for you ({count})" if count else "Waiting for you"
        if self.marked:
            title += f" · {len(self.marked)} marked"
        self.border_title = title

    def set_marks(self, request_ids: set[str]) -> None:
        """Replace the marks (only permissions still pending can be marked); repaint the rows that changed."""
        wanted = {rid for rid in request_ids if isinstance(self.requests.get(rid), PermissionRequest)}
        changed = wanted ^ self.marked
        self.marked = wanted
        option_list = self.query_one("#inbox-list", OptionList)
        for rid in changed & set(self.requests):
            option_list.replace_option_prompt(rid, self._prompt(self.requests[rid]))
        self._refresh_title()
        self._render_view(self.highlighted_id)

    def select(self, request_id: str) -> None:
        ids = list(self.requests)
        if request_id in ids:
            self.query_one("#inbox-list", OptionList).highlighted = ids.index(request_id)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._render_view(event.option.id)
        self.post_message(self.Changed(event.option.id))

    def _render_view(self, request_id: str | None) -> None:
        view = self.query_one("#inbox-view", Static)
        request = self.requests.get(request_id) if request_id else None
        if request is None:
            view.update(Text("Nothing is waiting for an answer.", style="dim"))
            return
        body: RenderableType
        if isinstance(request, PermissionRequest):
            body = render_permission(request)
            if self.marked:
                hint = Text.assemble(
                    (f"{len(self.marked)} marked: ", "bold green"),
                    ("o allow once · a allow always · r reject — all of them", "bold"),
                    ("\nspace mark/unmark · * mark all like this · m make a rule", "dim"),
                )
            else:
                hint = Text.assemble(
                    ("o allow once · a allow always · r reject", "bold"),
                    ("\nspace mark · * mark all like this · m make a rule", "dim"),
                )
        else:
            body = render_question(request)
            hint = Text("enter answer · r reject", style="bold")
        title = self.titles.get(request.sessionID) or request.sessionID
        view.update(Group(Text(f"{title}", style="dim"), body, Text(""), hint))
