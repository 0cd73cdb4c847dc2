"""The session list: a virtual, keyed table drawn line by line.

With 10,000 sessions a widget per row (or a DataTable rebuilt on every change) is far too slow,
so this follows Toolong: only visible lines are rendered (the Line API), each row's rendering
is cached by (session, version, width, selected), and a change to one session repaints one line.
Filtering and ordering work on a list of ids, not on widgets, and a filter that changes how
many rows there are does not lay out the screen (:mod:`orchestrator_tui.tui.steady`).
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from orchestrator_tui.pool.projects import in_project
from orchestrator_tui.pool.state import SessionView, Status
from orchestrator_tui.safetext import visible
from orchestrator_tui.tui.steady import SteadyInput, SteadyScrollView

#: Status glyphs, with the word used for filtering and the help screen.
GLYPHS: dict[str, str] = {
    "needs-input": "◆",
    "busy": "●",
    "retry": "↻",
    "error": "✗",
    "idle": "○",
    "unknown": "?",
    "unreachable": "⊘",
}


#: Width of the From column: room for "agent · claude-code", or just the kind when narrow.
ORIGIN_WIDE = 17
ORIGIN_NARROW = 6
#: Width of the Server column (shown only while the pool follows several servers).
SERVER_WIDTH = 10

EMPTY_PLACEHOLDER = "No sessions yet. Press n to start one, or let an agent call run."


@dataclass(frozen=True, slots=True)
class Row:
    """Everything one line shows; built from the pool by the app."""

    id: str
    state: str  # a key of GLYPHS
    title: str
    origin: str
    updated: int | None
    path: str
    additions: int
    deletions: int
    tokens: int
    cost: float
    #: The MCP client that launched an agent's session ("claude-code"), from the registry.
    client: str | None = None
    #: The session's project (its worktree root) and its own directory, as OpenCode says them.
    project: str | None = None
    directory: str | None = None
    #: The server it lives on, when the pool follows several (None: one server, no column).
    server: str | None = None
    #: "agent · claude-code", "human" or "other": what the From column and the detail pane say.
    origin_label: str = field(init=False, compare=False)
    #: What the filter matches against, computed once per row (10,000 rows per keystroke).
    haystack: str = field(init=False, compare=False)
    id_key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin_label", origin_label(self.origin, self.client))
        # Letters-in-order matching runs over the words a person reads. The id only matches as
        # a substring: a random 30-character id holds most short words' letters in order, so
        # "beta" would otherwise match nearly every session.
        text = f"{self.title} {self.where} {self.origin_label} {self.state} {self.server or ''}"
        object.__setattr__(self, "haystack", text.casefold())
        object.__setattr__(self, "id_key", self.id.casefold())

    @property
    def project_name(self) -> str:
        """The project as the list names it: its folder's name."""
        return os.path.basename(self.project.rstrip("/")) if self.project else ""

    @property
    def where(self) -> str:
        """Project, then the subdirectory the session works in ("api/sub"), for the Project column."""
        name = self.project_name
        if self.project and self.directory and self.directory != self.project:
            return f"{name}/{os.path.relpath(self.directory, self.project)}"
        return name or self.path

    def matches(self, needle: str) -> bool:
        """``needle`` is already casefolded."""
        return needle in self.id_key or fuzzy_match(needle, self.haystack)


def origin_label(origin: str, client: str | None) -> str:
    """Who launched a session, as people say it: the agent's MCP client by name, else the kind.

    A human's client is always this dashboard, so naming it would add nothing. The client's name
    is whatever the agent's MCP ``initialize`` said: escaped.
    """
    if origin == "agent" and client:
        return f"agent · {visible(client)}"
    return origin


def row_state(view: SessionView, needs_input: bool, reachable: bool = True) -> str:
    if not reachable:
        return "unreachable"  # its server is down: nothing said of it can be trusted now
    if needs_input:
        return "needs-input"
    if view.status is Status.BUSY:
        return "busy"
    if view.status is Status.RETRY:
        return "retry"
    if view.last_error and view.status is not Status.BUSY and not _aborted(view.last_error):
        return "error"
    return view.status.value


def _aborted(error: dict[str, object]) -> bool:
    return error.get("name") == "MessageAbortedError"


def age(ms: int | None, now: float | None = None) -> str:
    if not ms:
        return "—"
    seconds = int((now if now is not None else time.time()) - ms / 1000)
    if seconds < 60:
        return "now"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def fuzzy_match(needle: str, haystack: str) -> bool:
    """Substring, or every character of the needle in order (``fzf``-style)."""
    return needle in haystack or _in_order(needle).match(haystack) is not None


@functools.lru_cache(maxsize=64)
def _in_order(needle: str) -> re.Pattern[str]:
    """``needle``'s characters in order, as a regex that never backtracks ("a", not-b's, "b"...).

    A keystroke filters 10,000 rows: one C-level match per row instead of a Python loop.
    """
    parts = [f"[^{re.escape(char)}]*{re.escape(char)}" for char in needle]
    return re.compile("".join(parts), re.DOTALL)


def compact_number(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


class SessionList(SteadyScrollView, can_focus=True):
    """Keyboard-driven list of sessions; posts :class:`SessionList.Highlighted` on moves."""

    COMPONENT_CLASSES = {
        "session-list--header",
        "session-list--cursor",
        "session-list--needs-input",
        "session-list--busy",
        "session-list--retry",
        "session-list--error",
        "session-list--idle",
        "session-list--unknown",
        "session-list--unreachable",
        "session-list--dim",
        "session-list--agent",
        "session-list--human",
    }

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0, repaint=False)

    class Highlighted(Message):
        def __init__(self, session_id: str | None) -> None:
            self.session_id = session_id
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, Row] = {}
        self.order: list[str] = []
        self.shown: list[str] = []
        self.filter_text = ""
        #: Only sessions of this project are shown (None: every project).
        self.project_filter: str | None = None
        #: Rows are grouped by project (then newest first), instead of newest first.
        self.grouped = False
        #: The Server column is drawn (the pool follows several servers).
        self.show_server = False
        #: What the empty list says (the app changes it while OpenCode is unreachable).
        self.placeholder = EMPTY_PLACEHOLDER
        self._cache: dict[tuple[str, int, bool], Strip] = {}
        self._now = time.time()
        #: The order's sort keys, kept beside it (see :meth:`_key`); ``_seq`` numbers the rows
        #: in the order they were added, which breaks ties between equal times.
        self._keys: list[tuple[str, int, int]] = []
        self._seq: dict[str, int] = {}
        self._next_seq = 0
        #: The session the app was last told is highlighted.
        self._announced: str | None = None

    # ------------------------------------------------------------------ data

    @property
    def selected_id(self) -> str | None:
        if 0 <= self.cursor < len(self.shown):
            return self.shown[self.cursor]
        return None

    def set_rows(self, rows: dict[str, Row]) -> None:
        """Replace the whole data set (first load, resync)."""
        self.rows = rows
        self._seq = {sid: i for i, sid in enumerate(rows)}
        self._next_seq = len(rows)
        self._cache.clear()
        self._reorder()

    def update_rows(self, changed: dict[str, Row], removed: set[str]) -> None:
        """Apply a diff by key; repaint only what is needed.

        Under a stream of events a handful of sessions change per refresh: they are moved to
        their new places in the order (a binary search each) instead of sorting all 10,000
        again.
        """
        moved: dict[str, Row | None] = {}  # id → its row before (None: new)
        refilter = False
        for sid in removed:
            old = self.rows.pop(sid, None)
            if old is not None:
                moved[sid] = old
        for sid, row in changed.items():
            old = self.rows.get(sid)
            self.rows[sid] = row
            if old is None:
                self._seq[sid] = self._next_seq
                self._next_seq += 1
                moved[sid] = None
            elif old.updated != row.updated or (self.grouped and old.project != row.project):
                moved[sid] = old
            elif (self.filter_text and old.haystack != row.haystack) or (
                self.project_filter is not None and old.directory != row.directory
            ):
                refilter = True
        if changed or removed:
            self._drop_cache(set(changed) | removed)
        if moved:
            self._move(moved)
        if moved or refilter:
            self._apply_filter()
        else:
            self._repaint_ids(set(changed))

    def set_placeholder(self, text: str | None) -> None:
        """What the list says when it is empty (None: the default hint)."""
        text = text or EMPTY_PLACEHOLDER
        if text != self.placeholder:
            self.placeholder = text
            if not self.shown:
                self.refresh()

    def set_filter(self, text: str) -> None:
        before = self.filter_text
        self.filter_text = text.strip().casefold()
        # A longer needle only narrows: what matched before is all that can match now.
        narrowing = bool(before) and self.filter_text.startswith(before)
        self._apply_filter(self.shown if narrowing else None)

    def set_project(self, project: str | None) -> None:
        """Show only this project's sessions (None: every project's)."""
        self.project_filter = project
        self._apply_filter()

    def set_grouped(self, grouped: bool) -> None:
        """Group the rows by project, or list them newest first."""
        if grouped != self.grouped:
            self.grouped = grouped
            self._reorder()

    def _key(self, sid: str, row: Row) -> tuple[str, int, int]:
        """Newest first (within its project when grouped); equal times keep the order the
        sessions were added in."""
        group = (row.project_name.casefold() + "\0" + (row.project or "")) if self.grouped else ""
        return (group, -(row.updated or 0), self._seq[sid])

    def _reorder(self) -> None:
        rows = self.rows
        self._keys = sorted(self._key(sid, row) for sid, row in rows.items())
        by_seq = {seq: sid for sid, seq in self._seq.items() if sid in rows}
        self.order = [by_seq[seq] for *_, seq in self._keys]
        self._apply_filter()

    def _move(self, moved: dict[str, Row | None]) -> None:
        """Take the moved rows out of the order and put them back where they now belong."""
        if len(moved) > 64:  # a resync-sized change: sorting once is cheaper
            rows = self.rows
            for sid in [sid for sid in self._seq if sid not in rows]:
                del self._seq[sid]
            self._keys = sorted(self._key(sid, row) for sid, row in rows.items())
            by_seq = {seq: sid for sid, seq in self._seq.items()}
            self.order = [by_seq[seq] for *_, seq in self._keys]
            return
        keys, order = self._keys, self.order
        for sid, old in moved.items():
            if old is not None:
                i = bisect.bisect_left(keys, self._key(sid, old))
                if i < len(order) and order[i] == sid:
                    del keys[i], order[i]
            row = self.rows.get(sid)
            if row is None:
                self._seq.pop(sid, None)
                continue
            key = self._key(sid, row)
            i = bisect.bisect_left(keys, key)
            keys.insert(i, key)
            order.insert(i, sid)

    def _apply_filter(self, candidates: list[str] | None = None) -> None:
        """Show the rows of the order that match the filter (``candidates``: only these can)."""
        keep = self.selected_id
        needle = self.filter_text
        project = self.project_filter
        rows = self.rows
        if needle or project is not None:
            self.shown = [
                sid
                for sid in (candidates or self.order)
                if (not needle or rows[sid].matches(needle))
                and (project is None or in_project(rows[sid].directory, project))
            ]
        else:
            self.shown = list(self.order)
        self.virtual_size = Size(self.size.width, len(self.shown) + 1)
        index = self.shown.index(keep) if keep is not None and keep in self.shown else self.cursor
        index = min(index, len(self.shown) - 1)
        self._set_cursor(max(0, index), announce=keep != (self.shown[index] if self.shown else None))
        self.refresh()

    def _drop_cache(self, ids: set[str]) -> None:
        if len(self._cache) > 4 * max(len(self.shown), 100):
            self._cache.clear()
            return
        for key in [k for k in self._cache if k[0] in ids]:
            del self._cache[key]

    def _repaint_ids(self, ids: set[str]) -> None:
        top = self.scroll_offset.y
        height = self.size.height
        for y, sid in enumerate(self.shown[top : top + height]):
            if sid in ids:
                self.refresh_line(y + 1 + top)

    def tick(self) -> None:
        """Ages move with the clock: repaint once in a while."""
        self._now = time.time()
        self._cache.clear()
        self.refresh()

    # ------------------------------------------------------------------ cursor

    def select(self, session_id: str) -> bool:
        if session_id not in self.rows:
            return False
        if session_id not in self.shown:
            self.filter_text = ""
            self.project_filter = None
            self._apply_filter()
        self._set_cursor(self.shown.index(session_id))
        return True

    def _set_cursor(self, index: int, announce: bool = True) -> None:
        old = self.cursor
        self.cursor = index
        if old != index:
            self._drop_cache({sid for sid in (self._id_at(old), self._id_at(index)) if sid})
            self.refresh()
        self.scroll_to_region_of(index)
        # The cursor follows its session when the order changes: the app hears of a move only
        # when another session is under it (the detail pane would be rebuilt for nothing).
        if announce or self.selected_id != self._announced:
            self._announced = self.selected_id
            self.post_message(self.Highlighted(self.selected_id))

    def _id_at(self, index: int) -> str | None:
        return self.shown[index] if 0 <= index < len(self.shown) else None

    def scroll_to_region_of(self, index: int) -> None:
        top = self.scroll_offset.y
        height = max(1, self.size.height - 1)
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        if self.shown:
            self._set_cursor(max(0, min(len(self.shown) - 1, self.cursor + delta)))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_jump(self, where: int) -> None:
        if self.shown:
            self._set_cursor(0 if where == 0 else len(self.shown) - 1)

    def first_matching(self, predicate: Callable[[Row], bool]) -> str | None:
        """The next visible session after the cursor (wrapping) whose row matches."""
        n = len(self.shown)
        for step in range(1, n + 1):
            sid = self.shown[(self.cursor + step) % n]
            if predicate(self.rows[sid]):
                return sid
        return None

    def on_click(self, event: object) -> None:
        y = getattr(event, "y", None)
        if isinstance(y, int) and y >= 1:
            index = self.scroll_offset.y + y - 1
            if 0 <= index < len(self.shown):
                self._set_cursor(index)

    # ------------------------------------------------------------------ drawing

    def _columns(self, width: int) -> tuple[int, int, int, int, int, int, int]:
        """Widths of title, origin, age, project, server, changes, usage (the glyph takes 2).

        The From column names the agent's client ("agent · claude-code") when there is room for
        it next to a readable title; on narrow terminals it shrinks back to the kind ("agent").
        The Server column is there only while the pool follows several servers.
        """
        age_w, changes, usage = 4, 9, 14
        server = SERVER_WIDTH + 1 if self.show_server else 0
        origin = ORIGIN_WIDE
        rest = width - 2 - origin - age_w - changes - usage - 5 - server
        if rest < 30:
            origin = ORIGIN_NARROW
            rest = width - 2 - origin - age_w - changes - usage - 5 - server
        if rest < 30:  # narrow terminal: drop usage and changes next
            usage = changes = 0
            rest = width - 2 - origin - age_w - 3 - server
        path = max(0, min(28, rest // 4))
        title = max(8, rest - path)
        return title, origin, age_w, path, max(0, server - 1), changes, usage

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._header(width)
        index = self.scroll_offset.y + y - 1
        if index >= len(self.shown):
            if not self.shown and y == 2:
                return self._empty_line(width)
            return Strip.blank(width, self.rich_style)
        sid = self.shown[index]
        selected = index == self.cursor
        key = (sid, width, selected)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._render_row(self.rows[sid], width, selected)
            self._cache[key] = strip
        return strip

    def _header(self, width: int) -> Strip:
        title, origin, age_w, path, server, changes, usage = self._columns(width)
        text = "  " + _fit("Session", title) + " " + _fit("From", origin) + " " + _fit("Age", age_w)
        text += " " + _fit("Project", path)
        if server:
            text += " " + _fit("Server", server)
        if changes:
            text += " " + _fit("Changes", changes) + " " + _fit("Tokens / cost", usage)
        style = self.get_component_rich_style("session-list--header")
        return Strip([Segment(_fit(text, width), style)], width)

    def _empty_line(self, width: int) -> Strip:
        if self.filter_text:
            message = f"No session matches “{self.filter_text}”."
        elif self.project_filter is not None:
            message = f"No session in {self.project_filter} yet. Press f to see every project."
        else:
            message = self.placeholder
        message = visible(message)
        style = self.get_component_rich_style("session-list--dim")
        return Strip([Segment(_fit("  " + message, width), style)], width)

    def _render_row(self, row: Row, width: int, selected: bool) -> Strip:
        title_w, origin_w, age_w, path_w, server_w, changes_w, usage_w = self._columns(width)
        base = self.rich_style
        glyph_style = self.get_component_rich_style(f"session-list--{row.state}")
        dim = self.get_component_rich_style("session-list--dim")
        origin_style = (
            self.get_component_rich_style("session-list--agent")
            if row.origin == "agent"
            else self.get_component_rich_style("session-list--human")
            if row.origin == "human"
            else dim
        )
        segments = [
            Segment(GLYPHS.get(row.state, "?") + " ", glyph_style),
            # Titles and paths are the model's and the project's: one line, controls escaped.
            Segment(_fit(visible(row.title or row.id), title_w) + " ", base),
            Segment(_fit(_squeeze(row.origin_label, origin_w), origin_w) + " ", origin_style),
            Segment(_fit(age(row.updated, self._now), age_w) + " ", dim),
            Segment(_fit(visible(row.where), path_w) + " ", dim),
        ]
        if server_w:
            segments.append(Segment(_fit(visible(row.server or ""), server_w) + " ", dim))
        if changes_w:
            change = f"+{row.additions}/-{row.deletions}" if (row.additions or row.deletions) else ""
            usage = f"{compact_number(row.tokens)} ${row.cost:.2f}" if row.tokens else ""
            segments += [Segment(_fit(change, changes_w) + " ", dim), Segment(_fit(usage, usage_w), dim)]
        strip = Strip(segments).adjust_cell_length(width, base)
        if selected:
            # Background (and bold while focused) on top of the cells' own styles: Strip.apply_style
            # would put it underneath, where the row's background hides it. Glyph colours stay.
            cursor = self.get_component_rich_style("session-list--cursor")
            post = Style(bgcolor=cursor.bgcolor, bold=cursor.bold if self.has_focus else None)
            strip = Strip(Segment.apply_style(strip, post_style=post), strip.cell_length)
        return strip

    def on_focus(self) -> None:
        self._cache.clear()
        self.refresh()

    def on_blur(self) -> None:
        self._cache.clear()
        self.refresh()

    def on_resize(self) -> None:
        self._cache.clear()
        self.virtual_size = Size(self.size.width, len(self.shown) + 1)


class FilterInput(SteadyInput):
    """The session list's filter: the list follows each character in the frame that echoes it.

    Textual's ``Input.Changed`` reaches the app a few message hops after the key, by which time
    the next frame has often gone out with the echo alone, and the filtered rows waited for the
    frame after it (16 ms at 60 frames a second, on the figure closest to its budget). The
    callback runs as the value changes, inside the key's own handling.
    """

    def __init__(self, on_change: Callable[[str], None], *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id)
        self._on_change = on_change

    def watch_value(self, value: str) -> None:
        self._on_change(value)


def _squeeze(label: str, width: int) -> str:
    """ "agent · claude-code" → "agent·claude-code" when the column is a little too narrow."""
    return label if len(label) <= width else label.replace(" · ", "·")


def _fit(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text.ljust(width)
