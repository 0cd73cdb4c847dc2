"""The dashboard's keys, declared once: the bindings, the footer, the command palette and the
help screen are all derived from :data:`KEYS`, so they cannot disagree.

A :class:`Key` is bound on the main screen: its ``help`` is the sentence the help screen and the
palette both show, its ``label`` the footer's (and the binding's) short name. Keys whose
``owner`` is the inbox run the inbox's own actions (:class:`~orchestrator_tui.tui.widgets.Inbox`),
which post typed messages the app answers; they are bound at the app so they work wherever the
focus is on the main screen, as the inbox's highlighted request is what they act on.

A :class:`Note` is a help line about keys bound elsewhere (the question dialog, the session list,
every dialog, Textual itself) or about what the screen shows; where it names the screen or widget
that binds its keys, a test checks that they are bound there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen

from orchestrator_tui.tui.screens import QuestionScreen
from orchestrator_tui.tui.session_list import SessionList
from orchestrator_tui.tui.widgets import SETTLE_SECONDS


@dataclass(frozen=True)
class Key:
    """One key of the main screen: its binding, its help line, its footer and palette entries."""

    #: Textual key names, comma-separated ("L,shift+l"); "" for a palette-only command.
    keys: str
    #: The action, in ``owner``'s namespace ("permission('once')" is the inbox's).
    action: str
    #: The footer's and the binding's short name.
    label: str
    #: What it does, as the help screen and the palette say it.
    help: str
    #: How the key is written in help and the footer ("L", "*", "/"); the key itself when empty.
    display: str = ""
    #: Shown in the footer.
    footer: bool = False
    #: The palette entry's name; None: not in the palette.
    palette: str | None = None
    owner: Literal["app", "inbox"] = "app"

    @property
    def shown(self) -> str:
        return self.display or self.keys.split(",")[0]

    @property
    def binding_action(self) -> str:
        """The action as the app runs it (the inbox's go through ``app.action_inbox``)."""
        return self.action if self.owner == "app" else f'{self.owner}("{self.action}")'


@dataclass(frozen=True)
class Note:
    """A help line about keys bound elsewhere, or about what the screen shows."""

    shown: str
    help: str
    #: The Textual key names the line is about, and the screen or widget that binds them
    #: (a test checks they are bound there).
    keys: str = ""
    bound_in: type[DOMNode] | None = None


@dataclass(frozen=True)
class Section:
    title: str
    entries: tuple[Key | Note, ...]


KEYS: tuple[Section, ...] = (
    Section(
        "Requests (the inbox, bottom)",
        (
            Key(
                "o",
                "permission('once')",
                "Allow once",
                "allow the highlighted permission once",
                footer=True,
                palette="Allow once",
                owner="inbox",
            ),
            Key(
                "a",
                "permission('always')",
                "Allow always",
                "allow always (confirm lists the patterns)",
                footer=True,
                palette="Allow always…",
                owner="inbox",
            ),
            Key(
                "r",
                "reject",
                "Reject",
                "reject, optionally telling the agent why",
                footer=True,
                palette="Reject…",
                owner="inbox",
            ),
            Key("enter", "answer", "Answer", "answer the highlighted question", owner="inbox"),
            Note("1-9", "in a question: pick an option", "1,2,3,4,5,6,7,8,9", QuestionScreen),
            Note("ctrl+s", "in a question: submit (press twice)", "ctrl+s", QuestionScreen),
            Note(f"{SETTLE_SECONDS:g} s", "keys act only on a request shown this long"),
        ),
    ),
    Section(
        "Several at once, and rules",
        (
            Key(
                "space",
                "toggle_mark",
                "Mark",
                "mark / unmark the highlighted permission",
                palette="Mark / unmark request",
                owner="inbox",
            ),
            Key(
                "asterisk",
                "mark_similar",
                "Mark similar",
                "mark all identical (same diff or command)",
                display="*",
                palette="Mark all like this request",
                owner="inbox",
            ),
            Note("o a r", "with marks: answer all marked requests"),
            Key(
                "m",
                "make_rule",
                "Make rule",
                "make a rule for matching requests, all sessions",
                palette="Make a rule from this permission…",
                owner="inbox",
            ),
            Key("R,shift+r", "rules", "Rules", "rules: list them, d revokes one", display="R", palette="Show rules"),
        ),
    ),
    Section(
        "The pool",
        (
            Key(
                "w",
                "workers",
                "Attached",
                "attached front ends and their calls in flight",
                palette="Show attached front ends",
            ),
            Key(
                "L,shift+l",
                "decision_log",
                "Decision log",
                "decision log: every answer, who gave it, how",
                display="L",
                palette="Show decision log",
            ),
            Key(
                "P,shift+p",
                "policy",
                "Policy",
                "approval policy: what agents may answer",
                display="P",
                palette="Show approval policy",
            ),
        ),
    ),
    Section(
        "Sessions",
        (
            Note("↑ ↓ / j k", "move", "up,down,j,k", SessionList),
            Key("n", "new_session", "New", "new session with a prompt", footer=True, palette="New session…"),
            Key(
                "p",
                "send_prompt",
                "Prompt",
                "send a prompt to the selected session",
                footer=True,
                palette="Send prompt to selected session…",
            ),
            Key(
                "c",
                "run_command",
                "Command",
                "run a command in the selected session",
                footer=True,
                palette="Run a command in selected session…",
            ),
            Key("x", "abort", "Abort", "abort the selected session", footer=True, palette="Abort selected session"),
            Key(
                "d",
                "delete",
                "Delete",
                "delete the selected session (asks first)",
                palette="Delete selected session…",
            ),
            Key(
                "slash",
                "filter",
                "Filter",
                "filter: fuzzy search",
                display="/",
                footer=True,
                palette="Filter sessions…",
            ),
            Key(
                "f",
                "project",
                "Project",
                "only the selected session's project; again: every project",
                footer=True,
                palette="Show only this project / every project",
            ),
            Key(
                "g",
                "group",
                "Group",
                "group sessions by project, or newest first",
                palette="Group sessions by project",
            ),
            Key(
                "i",
                "next_waiting",
                "Next ◆",
                "jump to the next session that needs input",
                footer=True,
                palette="Jump to next session needing input",
            ),
        ),
    ),
    Section(
        "App",
        (
            Note("tab", "move focus between list, inbox", "tab", Screen),  # Textual's own key
            Note("esc", "close a dialog or screen"),
            Note("ctrl+p", "command palette (every action, every command)"),
            Key("question_mark", "help", "Help", "this help", display="?", footer=True, palette="Help"),
            Key("q", "quit", "Quit", "quit", footer=True),
        ),
    ),
    Section(
        "Status glyphs",
        (
            Note("◆", "needs input"),
            Note("●", "busy"),
            Note("↻", "retrying"),
            Note("✗", "error"),
            Note("○", "idle"),
            Note("?", "unknown (not observed yet)"),
        ),
    ),
)

#: Palette-only commands: no key of their own.
COMMANDS: tuple[Key, ...] = (
    Key("", "toggle_bell", "Bell", "ring the terminal bell for new requests, or stop", palette="Toggle terminal bell"),
    Key(
        "",
        "toggle_desktop_notifications",
        "Desktop",
        "desktop notifications through the terminal for new requests, or stop",
        palette="Toggle desktop notifications",
    ),
)


# The table is read when asked for (not bound as a default argument), so what is derived from it
# follows it, tests that extend it included.


def all_keys() -> list[Key]:
    """Every :class:`Key`, in table order (the footer's order, the palette's order)."""
    return [entry for section in KEYS for entry in section.entries if isinstance(entry, Key)] + list(COMMANDS)


def bindings() -> list[Binding]:
    """The main screen's bindings (the footer shows those with ``footer``)."""
    return [
        Binding(key.keys, key.binding_action, key.label, show=key.footer, key_display=key.display or None)
        for key in all_keys()
        if key.keys
    ]


def help_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(key, what it does)]) for the help screen."""
    return [(section.title, [(entry.shown, entry.help) for entry in section.entries]) for section in KEYS]


def palette_entries(app: App[Any]) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, help, callback) per palette entry: the callback runs exactly what the key runs."""
    return [
        (key.palette, palette_help(key), partial(app.run_action, key.binding_action))
        for key in all_keys()
        if key.palette is not None
    ]


def palette_help(key: Key) -> str:
    """The palette's line under an entry: the key, then the help screen's sentence."""
    return f"{key.shown} · {key.help}" if key.keys else key.help


class KeyClock:
    """When the key being handled was pressed.

    Textual stamps each key when it arrives; the app notes it before its bindings run and forgets
    it once the key is handled, so an action reads when its key was pressed, not when a busy app
    got round to it (a palette entry or a click has no key: then it is now).
    """

    def __init__(self) -> None:
        self._pressed_at: float | None = None

    def pressed(self, at: float) -> None:
        self._pressed_at = at

    def handled(self) -> None:
        self._pressed_at = None

    def now(self) -> float:
        return self._pressed_at if self._pressed_at is not None else time.monotonic()
