"""The look every pool screen shares (one table in a full-height dialog), and how they write
times, durations and decisions.
"""

from __future__ import annotations

import time
from datetime import datetime

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Label,
    Static,
)


def clock(ts: float | None, now: float | None = None) -> str:
    """A registry timestamp as a person reads it: the time today, the date before that."""
    if not ts:
        return "—"
    when = datetime.fromtimestamp(ts)
    today = datetime.fromtimestamp(now if now is not None else time.time()).date()
    return when.strftime("%H:%M:%S") if when.date() == today else when.strftime("%b %d %H:%M")


def duration(seconds: float) -> str:
    """How long something has lasted, to the precision that matters at that length."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


REPLY_WORDS = {
    "once": "allow once",
    "always": "allow always",
    "reject": "reject",
    "reply": "answered",
    "created": "rule made",
    "revoked": "rule revoked",
}
REPLY_STYLES = {"once": "green", "always": "bold green", "reject": "red", "reply": "green", "revoked": "yellow"}


def reply_text(reply: str) -> Text:
    """A decision in words, coloured like the session list's glyphs (allow green, reject red)."""
    return Text(REPLY_WORDS.get(reply, reply), style=REPLY_STYLES.get(reply, ""))


def rule_reply_text(reply: str) -> Text:
    """What a rule does: "allow" (it answers each matching request once) or "reject"."""
    return reply_text("reject") if reply == "reject" else Text("allow", style=REPLY_STYLES["once"])


class TableScreen(ModalScreen[None]):
    """A full-height page around one table: the look every pool screen shares.

    Subclasses say what the rows are (:meth:`load_rows`); with ``refresh_every`` the rows are
    reloaded on a timer while the screen is open (only repainted when they changed), so a
    screen left open keeps telling the truth about other processes. The dashboard keeps each
    page once it has been built (see ``PoolScreens.open_page``): every opening reads the rows
    again and starts at the top, as a new screen would, and the timer sleeps while it is closed.
    """

    BINDINGS = [Binding("escape,q", "close", "Close")]

    TITLE = ""
    HINT = "Esc to close"
    EMPTY = "Nothing to show."
    COLUMNS: tuple[str, ...] = ()
    refresh_every: float | None = None

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen page-screen")
        self._shown: list[tuple[str, tuple[RenderableType, ...]]] | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog table-dialog"):
            yield Label(self.TITLE, classes="dialog-title")
            yield Static(classes="table-summary")
            yield DataTable(cursor_type="row", zebra_stripes=True, classes="pool-table")
            yield Static(self.EMPTY, classes="table-empty")
            yield Static(self.HINT, classes="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in self.COLUMNS:
            table.add_column(column, key=column)
        if self.refresh_every:
            self._timer = self.set_interval(self.refresh_every, self.reload, pause=True)
        table.focus()

    def on_screen_resume(self) -> None:
        self.reload()
        table = self.query_one(DataTable)
        if table.row_count:
            table.move_cursor(row=0, animate=False)
        if self._timer is not None:
            self._timer.resume()

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def load_rows(self) -> list[tuple[str, tuple[RenderableType, ...]]]:
        """(key, cells) per row, in display order."""
        raise NotImplementedError

    def summary(self) -> RenderableType:
        """The line above the table (counts, where the data comes from)."""
        return ""

    def reload(self) -> None:
        """Read the rows again; touch the table only when something changed (keeps the cursor)."""
        try:
            rows = self.load_rows()
        except Exception as exc:  # a registry hiccup must not take the dashboard down
            self.query_one(".table-summary", Static).update(Text(f"Could not read the registry: {exc}", style="red"))
            return
        self.query_one(".table-summary", Static).update(self.summary())
        if rows == self._shown:
            return
        self._shown = rows
        table = self.query_one(DataTable)
        keep = self.highlighted_key
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        self.set_class(not rows, "-empty")

    @property
    def highlighted_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_close(self) -> None:
        self.dismiss(None)
