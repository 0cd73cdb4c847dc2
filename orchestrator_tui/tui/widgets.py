"""The dashboard's panes: server status line, session detail, approvals inbox."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.state import SessionView, ToolCall
from orchestrator_tui.tui.render import (
    permission_summary,
    question_summary,
    render_permission,
    render_question,
)
from orchestrator_tui.tui.safe import shown, visible
from orchestrator_tui.tui.session_list import GLYPHS, Row, age
from orchestrator_tui.tui.steady import SteadyTextArea

if TYPE_CHECKING:
    from orchestrator_tui.tui.keys import KeyClock


class KeyFooter(Footer):
    """Textual's footer, rebuilt only when the keys it shows change.

    Textual's footer rebuilds itself (a widget per key, each laid out) whenever its screen says
    its bindings were updated: on every focus change, and twice for each page opened and
    closed, though the same keys come back. Traced through a pty, that was 6 layouts of the
    screen per page opened, a good part of the 50 ms the page has to appear.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown_keys: tuple[object, ...] | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            keys = tuple(
                (binding.key, binding.description, binding.action, enabled, tooltip)
                for _, binding, enabled, tooltip in screen.active_bindings.values()
                if binding.show or binding.key == screen.app.COMMAND_PALETTE_BINDING
            )
            if keys == self._shown_keys:
                return
            self._shown_keys = keys
        super().bindings_changed(screen)


@dataclass(frozen=True)
class ServerState:
    mode: str = "managed"  # managed | attached
    url: str = ""
    version: str = ""
    #: The route family the client speaks to it (`legacy` or `api`, opencode/client.py); "" unknown.
    backend: str = ""
    stream: str = "connecting"  # connecting | connected | disconnected | down
    detail: str = ""
    waiting: int = 0
    sessions: int = 0
    #: MCP workers (agents) attached to the pool right now (registry members).
    agents: int = 0
    #: The pool's state cannot be used (the dashboard fails closed): said on the line itself.
    pool_broken: bool = False
    #: (name, stream state) of each server attached to the pool besides its own.
    others: tuple[tuple[str, str], ...] = ()


#: How the status line marks an attached server: live, down, or anything in between.
_SERVER_MARKS = {"connected": ("●", "green"), "down": ("✗", "bold red")}


class StatusLine(Static):
    """One line: is it live, how many sessions and requests, which server.

    The most urgent facts come first, so a narrow terminal cuts the server URL, not the count
    of requests waiting (styles/app.tcss keeps the line unwrapped, with an ellipsis).
    """

    def show(self, state: ServerState) -> None:
        self.update(self.line(state), layout=False)  # always one line: no layout pass needed

    @staticmethod
    def line(state: ServerState) -> Text:
        """The line's text for ``state`` (pure: the tests read it without an app)."""
        text = Text()
        text.append(" orchestrator-tui ", style="bold reverse")
        text.append("  ")
        if state.pool_broken:
            text.append("⚠ pool state unavailable: everything needs you (P)", style="bold red")
            text.append("  ")
        if state.stream == "down":
            text.append("✗ OpenCode unavailable", style="bold red")
            text.append(f"  {visible(state.detail)}", style="red")
            return text
        live = {
            "connected": ("● live", "green"),
            "connecting": ("◌ connecting", "yellow"),
            "disconnected": ("◌ reconnecting", "yellow"),
            "stopped": ("◌ stopped", "yellow"),
        }.get(state.stream, (state.stream, "yellow"))
        text.append(live[0], style=live[1])
        if state.stream == "disconnected" and state.detail:
            text.append(f" ({visible(state.detail)})", style="dim")
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
        text.append(f"{what} OpenCode {visible(state.version)}".strip(), style="bold")
        if state.backend:
            text.append(f" ({'/api' if state.backend == 'api' else 'legacy'} routes)", style="dim")
        for name, stream in state.others:
            mark, style = _SERVER_MARKS.get(stream, ("◌", "yellow"))
            text.append(f"  {mark} {visible(name)}", style=style)
        if state.url:
            text.append(f"  {visible(state.url)}", style="dim")
        return text


def _duration(call: ToolCall) -> str:
    if call.started_at and call.completed_at:
        took = call.completed_at - call.started_at
        return f"{took}ms" if took < 1000 else f"{took / 1000:.1f}s"
    if call.started_at:
        return f"{time.time() - call.started_at / 1000:.0f}s…"
    return ""


TOOL_STATE_STYLE = {
    "completed": "green",
    "error": "red",
    "running": "yellow",
    "pending": "dim",
    # Its turn stopped before it ended (the server that ran it went away): it never will.
    "interrupted": "bold red",
}


class DetailPane(Vertical):
    """The selected session: facts, tool-call timeline, and its streamed text as it arrives."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-info")
        yield Static(id="detail-tools")
        yield SteadyTextArea(
            id="detail-output",
            read_only=True,
            soft_wrap=True,
            show_line_numbers=False,
            highlight_cursor_line=False,
        )

    def on_mount(self) -> None:
        self._session_id: str | None = None
        self._message_id: str | None = None
        #: The model's text as received (the pane shows it with control characters escaped).
        self._raw_text = ""
        self._follow_pending = False
        #: What the facts and the tool timeline show now (see :meth:`show`).
        self._info_key: tuple[object, ...] | None = None
        self._tool_lines: list[tuple[str, str, str, str]] | None = None
        self._facts_shown: Table | None = None
        self.query_one("#detail-output", TextArea).border_title = "Output"
        self.query_one("#detail-tools", Static).border_title = "Tool calls"
        self.show(None, None, [])

    def show(
        self,
        view: SessionView | None,
        row: Row | None,
        pending: list[str],
        *,
        client_version: str | None = None,
    ) -> None:
        """Show one session (None: the empty state); ``client_version`` is the launching agent's."""
        info = self.query_one("#detail-info", Static)
        tools = self.query_one("#detail-tools", Static)
        # Without a session the info (or a connection error) gets the whole pane.
        self.set_class(view is None or row is None, "-empty")
        if view is None or row is None:
            self._info_key = self._tool_lines = None
            info.update(Text("No session selected.\n\nPress n to start one, ? for help.", style="dim"), layout=False)
            tools.update("", layout=False)
            self._set_text(None, "", "")
            return
        last = view.last_activity or row.updated
        activity = "—" if not last else "just now" if age(last) == "now" else f"{age(last)} ago"
        error = view.last_error if row.state == "error" else None
        retry = (view.retry.attempt, view.retry.message) if view.retry is not None else None
        # While a session streams, this runs on every screen refresh; the facts rarely change,
        # and rendering the table is the expensive part: only when what it says changed.
        agent = view.info.agent if view.info is not None else None
        info_key = (view.id, view.directory, agent, row, retry, tuple(pending), client_version, activity)
        # (Something else may have written into the pane meanwhile: the connection error does.)
        if info_key != self._info_key or error is not None or info.content is not self._facts_shown:
            self._info_key = info_key
            self._facts_shown = self._facts(view, row, pending, client_version, activity)
            info.update(self._facts_shown, layout=False)
        calls = list(view.tool_calls.values())[-6:]  # what fits in the pane's fixed height
        lines = [(call.status, call.tool, (call.title or _tool_input(call))[:80], _duration(call)) for call in calls]
        if lines != self._tool_lines:
            self._tool_lines = lines
            if lines:
                timeline = Table.grid(padding=(0, 1))
                for status, tool, label, took in reversed(lines):
                    timeline.add_row(
                        shown(status, TOOL_STATE_STYLE.get(status, "")),
                        shown(tool, "bold"),
                        shown(label, "dim"),
                        Text(took, style="dim"),
                    )
                tools.update(timeline, layout=False)
            else:
                tools.update(Text("no tool calls yet", style="dim"), layout=False)
        self._set_text(view.id, view.text_message_id or "", view.text)

    def _facts(
        self,
        view: SessionView,
        row: Row,
        pending: list[str],
        client_version: str | None,
        activity: str,
    ) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column()
        status = Text(f"{GLYPHS.get(row.state, '?')} {row.state}", style="bold")
        if view.retry is not None:
            retry = Text.assemble(f"  attempt {view.retry.attempt}: ", shown(view.retry.message or ""), style="yellow")
            status.append_text(retry)
        table.add_row("Session", shown(row.title or view.id, "bold"))
        table.add_row("Id", shown(view.id))
        table.add_row("Status", status)
        origin = Text(row.origin_label)
        if row.origin == "agent" and row.client and client_version:
            origin.append_text(Text.assemble(" ", shown(client_version), style="dim"))
        table.add_row("From", origin)
        # The agent of the session's latest prompt (OpenCode says none until the first one).
        agent = view.info.agent if view.info is not None else None
        table.add_row("Agent", shown(agent) if agent else Text("—", style="dim"))
        directory = shown(view.directory or "")
        if row.path:
            directory.append_text(Text.assemble("  (", shown(row.path), ")"))
        table.add_row("Directory", directory)
        table.add_row(
            "Pending",
            Text("◆ " + ", ".join(pending), style="bold magenta") if pending else Text("nothing", style="dim"),
        )
        # Usage shares the activity's row: the facts' height is fixed (9 rows, the error included).
        usage = f" · {row.tokens:,} tokens · ${row.cost:.4f}" if row.tokens else ""
        table.add_row("Activity", activity + usage)
        if view.last_error and row.state == "error":
            error = view.last_error
            data = error.get("data") if isinstance(error.get("data"), dict) else {}
            message = data.get("message") if isinstance(data, dict) else None
            table.add_row("Error", shown(f"{error.get('name', 'error')}: {message or ''}", "red"))
        return table

    def _set_text(self, session_id: str | None, message_id: str, text: str) -> None:
        """Append only what is new; start over when the session or message changes.

        The model's text is shown with its control characters escaped. Only the new part is
        escaped on each update (a long reply streams in thousands of pieces), unless the seam
        is one of the few places where a character's escape depends on its neighbour.
        """
        output = self.query_one("#detail-output", TextArea)
        raw = self._raw_text
        if (
            session_id != self._session_id
            or message_id != self._message_id
            or not text.startswith(raw)
            or (len(text) > len(raw) and _context_at_seam(raw, text[len(raw)]))
        ):
            self._raw_text = text
            output.load_text(visible(text, multiline=True))
            self._session_id = session_id
            self._message_id = message_id
            self._follow(output)
            return
        tail = visible(text[len(raw) :], multiline=True)
        self._raw_text = text
        if tail:
            # Follow the stream only when the reader is at the bottom already. A scroll to the
            # end we asked for is applied after the next refresh: until then, chunks arriving in
            # between must not read the old position as "the reader scrolled up".
            at_end = self._follow_pending or output.scroll_y >= output.max_scroll_y - 1
            output.insert(tail, output.document.end)
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


def _context_at_seam(before: str, first: str) -> bool:
    """Whether escaping ``before`` and what follows separately could differ from escaping them
    together: a CR may become half of a CR LF, and a joiner's escape depends on both neighbours."""
    return first in ("\u200c", "\u200d") or before.endswith(("\r", "\u200c", "\u200d"))


def _tool_input(call: ToolCall) -> str:
    data = call.input or {}
    for key in ("command", "filePath", "path", "pattern", "url", "description"):
        value = data.get(key)
        if isinstance(value, str):
            return value
    return ""


#: A key answers a request only once the request has been on screen (under the cursor, or in the
#: list for a batch answer) this long: a request that arrives or moves under the cursor just as a
#: key is pressed is never answered by that key.
SETTLE_SECONDS = 0.5


class Inbox(Horizontal):
    """Every pending permission and question across the pool, in the order they arrived.

    Permissions can be *marked* (``space``, ``*``) so one key answers several at once; a mark
    lives exactly as long as its request: when the request goes (answered here, by an agent,
    by a rule), so does the mark.

    What the human has seen is tracked here, because a key may only answer that: when the
    highlighted request was first *drawn* under the cursor (stamped after the screen refresh
    that painted it, and only while this screen is the one on top), and when each listed request
    was first drawn. New requests join at the end and never move the cursor; when the
    highlighted one leaves, the next one moves under the cursor and starts its own clock.
    """

    # ------------------------------------------------------------------ its keys (tui/keys.py)
    #
    # Each key posts what it was pressed on, captured while the key is handled: when it was
    # pressed, the request under the cursor, the marked ones. The app decides from that alone
    # (SETTLE_SECONDS, answers already on their way), never from what is highlighted later.

    class KeyPressed(Message):
        """An inbox key, with what was on screen when it was pressed."""

        def __init__(self, at: float, request_id: str | None, marked: tuple[str, ...]) -> None:
            #: When the key was pressed (monotonic; now for a palette entry or a click).
            self.at = at
            #: The request under the cursor then (None: the inbox was empty).
            self.request_id = request_id
            #: The marked requests then, in inbox order.
            self.marked = marked
            super().__init__()

    class Permission(KeyPressed):
        """``o`` / ``a``: allow the highlighted permission (or every marked one) once or always."""

        def __init__(self, reply: str, at: float, request_id: str | None, marked: tuple[str, ...]) -> None:
            self.reply = reply
            super().__init__(at, request_id, marked)

    class Reject(KeyPressed):
        """``r``: reject the highlighted request, or every marked permission."""

    class Answer(KeyPressed):
        """``enter`` (or a click on a listed request): answer the highlighted question."""

    class ToggleMark(KeyPressed):
        """``space``: mark or unmark the highlighted permission."""

    class MarkSimilar(KeyPressed):
        """``*``: mark every listed permission identical to the highlighted one."""

    class MakeRule(KeyPressed):
        """``m``: make a rule from the highlighted permission."""

    def __init__(self, clock: KeyClock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._clock = clock

    def _pressed(self) -> tuple[float, str | None, tuple[str, ...]]:
        return self._clock.now(), self.highlighted_id, tuple(self.marked_ids)

    def action_permission(self, reply: str) -> None:
        self.post_message(self.Permission(reply, *self._pressed()))

    def action_reject(self) -> None:
        self.post_message(self.Reject(*self._pressed()))

    def action_answer(self) -> None:
        self.post_message(self.Answer(*self._pressed()))

    def action_toggle_mark(self) -> None:
        self.post_message(self.ToggleMark(*self._pressed()))

    def action_mark_similar(self) -> None:
        self.post_message(self.MarkSimilar(*self._pressed()))

    def action_make_rule(self) -> None:
        self.post_message(self.MakeRule(*self._pressed()))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        # Enter (or a click) in the focused list: the list takes the key, so answer from here.
        event.stop()
        self.action_answer()

    def compose(self) -> ComposeResult:
        yield OptionList(id="inbox-list")
        with VerticalScroll(id="inbox-view-scroll"):
            yield Static(id="inbox-view")

    def on_mount(self) -> None:
        self.requests: dict[str, PermissionRequest | QuestionRequest] = {}
        self.titles: dict[str, str] = {}
        self.marked: set[str] = set()
        #: When each listed request was first drawn (monotonic; None: listed, not drawn yet).
        self._listed_at: dict[str, float | None] = {}
        #: The request shown under the cursor and since when it has been drawn there.
        self._under_cursor: tuple[str | None, float | None] = (None, None)
        #: The request the view (right-hand side) renders.
        self._view_id: str | None = None
        self._stamp_pending = False
        # The title (with the count) goes on the inbox's own border: the list inside has none.
        self.border_title = "Waiting for you"
        self.add_class("-empty")
        self._render_view(None)
        # Back from a dialog: what changed behind it is seen only now.
        self.app.screen_change_signal.subscribe(self, self._screen_changed)

    @property
    def highlighted_id(self) -> str | None:
        option_list = self.query_one("#inbox-list", OptionList)
        if option_list.highlighted is None or option_list.option_count == 0:
            return None
        return option_list.get_option_at_index(option_list.highlighted).id

    @property
    def marked_ids(self) -> list[str]:
        """The marked requests, in inbox order."""
        return [rid for rid in self.requests if rid in self.marked]

    # ------------------------------------------------------------------ what has been seen

    def shown_since(self, request_id: str) -> float | None:
        """Since when ``request_id`` has been drawn under the cursor (None: it is not, or not yet)."""
        rid, since = self._under_cursor
        return since if rid == request_id and rid == self.highlighted_id else None

    def listed_since(self, request_id: str) -> float | None:
        """Since when ``request_id`` has been drawn in the list (None: not listed, or not drawn yet)."""
        return self._listed_at.get(request_id)

    def seen_under_cursor(self, request_id: str, at: float) -> bool:
        """Whether ``request_id`` had been drawn under the cursor for SETTLE_SECONDS at ``at``."""
        since = self.shown_since(request_id)
        return since is not None and at - since >= SETTLE_SECONDS

    def seen_listed(self, request_id: str, at: float) -> bool:
        """Whether ``request_id`` had been drawn in the list for SETTLE_SECONDS at ``at``."""
        since = self._listed_at.get(request_id)
        return since is not None and at - since >= SETTLE_SECONDS

    def too_soon(self, request_ids: list[str], at: float) -> None:
        """A key came too soon for these requests: their clocks start again at that key.

        So a burst of presses (or a held key) never answers a request that arrived during it:
        only a press after SETTLE_SECONDS of looking does.
        """
        rid, since = self._under_cursor
        if rid in request_ids and since is not None:
            self._under_cursor = (rid, max(since, at))
        for request_id in request_ids:
            listed = self._listed_at.get(request_id)
            if listed is not None:
                self._listed_at[request_id] = max(listed, at)

    def _track_drawing(self) -> None:
        """Note what changed on screen; stamp it once a refresh has drawn it."""
        rid = self.highlighted_id
        if rid != self._under_cursor[0]:
            self._under_cursor = (rid, None)
        unstamped = (rid is not None and self._under_cursor[1] is None) or None in self._listed_at.values()
        if unstamped and not self._stamp_pending:
            self._stamp_pending = True
            self.call_after_refresh(self._stamp)

    def _stamp(self) -> None:
        """Runs once the screen has been refreshed with nothing left to draw."""
        self._stamp_pending = False
        if not self.is_attached or not self.screen.is_current:
            return  # behind a dialog: nothing here is seen; stamped when the screen is back
        now = time.monotonic()
        rid, since = self._under_cursor
        if rid is not None and since is None:
            if rid == self.highlighted_id == self._view_id:
                self._under_cursor = (rid, now)
            else:  # the cursor moved after the refresh: its own refresh stamps it
                self._track_drawing()
        for request_id, listed in self._listed_at.items():
            if listed is None:
                self._listed_at[request_id] = now

    def _screen_changed(self, screen: object) -> None:
        if screen is self.screen:
            self._track_drawing()

    # ------------------------------------------------------------------ contents

    def update_requests(self, requests: list[PermissionRequest | QuestionRequest], titles: dict[str, str]) -> None:
        """Show ``requests``: the ones already listed keep their place, new ones go at the end."""
        option_list = self.query_one("#inbox-list", OptionList)
        by_id = {r.id: r for r in requests}
        old = list(self.requests)
        order = [rid for rid in old if rid in by_id] + [r.id for r in requests if r.id not in self.requests]
        if order == old and titles == self.titles:
            return
        keep = self.highlighted_id
        self.requests = {rid: by_id[rid] for rid in order}
        self.titles = titles
        self.marked &= set(order)
        self._listed_at = {rid: self._listed_at.get(rid) for rid in order}
        option_list.clear_options()
        option_list.add_options([Option(self._prompt(self.requests[rid]), id=rid) for rid in order])
        self._refresh_title()
        self.set_class(not order, "-empty")  # nothing waiting: the inbox shrinks to one line
        if order:
            if keep in self.requests:
                index = order.index(keep)
            elif keep is not None:
                # The highlighted request left: the one after it moves up under the cursor.
                index = min(sum(1 for rid in old[: old.index(keep)] if rid in by_id), len(order) - 1)
            else:
                index = 0
            option_list.highlighted = index
        self._render_view(self.highlighted_id)

    def _prompt(self, request: PermissionRequest | QuestionRequest) -> Text:
        summary = permission_summary(request) if isinstance(request, PermissionRequest) else question_summary(request)
        title = self.titles.get(request.sessionID) or request.sessionID
        # Two lines, never wrapped (styles/app.tcss: nowrap + ellipsis): who, then what.
        mark = ("✔ ", "bold green") if request.id in self.marked else ("◆ ", "magenta")
        return Text.assemble(mark, shown(title, "bold"), "\n  ", summary)

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

    def _render_view(self, request_id: str | None) -> None:
        view = self.query_one("#inbox-view", Static)
        request = self.requests.get(request_id) if request_id else None
        self._view_id = request.id if request is not None else None
        self._track_drawing()
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
        view.update(Group(shown(title, "dim"), body, Text(""), hint))
