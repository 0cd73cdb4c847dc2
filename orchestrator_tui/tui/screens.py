"""Modal screens: confirmations, text prompts, answering questions, picking commands, help,
and the pool's screens (attached front ends, decision log, approval policy, rules).

Text from models, agents and projects (questions and options, command names, client names,
patterns, titles) is shown through :func:`shown` / :func:`visible`: control characters appear as
escapes, and it is never read as markup. What is sent back (an option's label, a command's
name, a rule's pattern) is the exact original.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option

from orchestrator_tui.opencode.models import Command, QuestionInfo, QuestionRequest
from orchestrator_tui.pool.registry import Decision, Member, Rule
from orchestrator_tui.tui.safe import shown, visible


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no with a body explaining exactly what will happen."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, body: RenderableType, confirm_label: str = "Confirm") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._body = body
        self._confirm = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                # Content, not a markup string: "[y]" would be read as a style tag and vanish.
                yield Button(Content(f"{self._confirm} [y]"), variant="primary", id="yes")
                yield Button(Content("Cancel [n]"), id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextPromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (a prompt, a rejection message); Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", *, allow_empty: bool = False, help_text: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._placeholder = placeholder
        self._allow_empty = allow_empty
        self._help = help_text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Input(placeholder=self._placeholder, id="text")
            yield Static(self._help or "Enter to send · Esc to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value and not self._allow_empty:
            self.query_one(".dialog-hint", Static).update(Text("Type something first (Esc cancels).", style="bold"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class CommandPickerScreen(ModalScreen[tuple[str, str] | None]):
    """Pick one of the server's commands, then give its arguments."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, commands: list[Command]) -> None:
        super().__init__(classes="dialog-screen")
        self._commands = commands

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Run a command in the selected session", classes="dialog-title")
            options = [
                Option(
                    Text.assemble(
                        shown(c.name, "bold"),
                        ("  ", "dim"),
                        shown(c.description.split("\n", 1)[0] if c.description else "", "dim"),
                    ),
                    id=c.name,
                )
                for c in self._commands
            ]
            yield OptionList(*options, id="commands")
            yield Input(placeholder="arguments ($ARGUMENTS)", id="arguments")
            yield Static("↑↓ choose · Enter run · Esc cancel", classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#arguments", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        option_list = self.query_one("#commands", OptionList)
        if option_list.highlighted is None:
            option_list.focus()
            return
        option = option_list.get_option_at_index(option_list.highlighted)
        self.dismiss((option.id or "", event.value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass
class QuestionDraft:
    """The answers being composed for one question request."""

    selected: list[set[int]] = field(default_factory=list)
    custom: list[str] = field(default_factory=list)

    def answers(self, request: QuestionRequest) -> list[list[str]]:
        out: list[list[str]] = []
        for i, q in enumerate(request.questions):
            labels = [q.options[j].label for j in sorted(self.selected[i]) if j < len(q.options)]
            if self.custom[i].strip():
                labels.append(self.custom[i].strip())
            out.append(labels)
        return out


QuestionResult = tuple[str, list[list[str]]] | None
"""("reply", answers) or ("reject", []); None when the screen was closed without a decision."""


class QuestionScreen(ModalScreen[QuestionResult]):
    """Answer a question request: number keys pick options, tabs switch questions."""

    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        Binding("1,2,3,4,5,6,7,8,9", "pick", "Pick option", show=False, key_display="1-9"),
        Binding("left,shift+tab", "tab(-1)", "Prev question", show=False),
        Binding("right,tab", "tab(1)", "Next question", show=False),
        Binding("ctrl+r", "reject", "Reject"),
        Binding("ctrl+s,enter", "submit", "Submit"),
    ]

    def __init__(self, request: QuestionRequest, session_title: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.request = request
        self.session_title = session_title
        n = len(request.questions)
        self.draft = QuestionDraft([set() for _ in range(n)], ["" for _ in range(n)])
        self.current = 0
        self.confirming = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog question-dialog"):
            title = "Question" if len(self.request.questions) == 1 else f"{len(self.request.questions)} questions"
            # Content, not markup: a session title may contain "[...]".
            who = visible(self.session_title or self.request.sessionID)
            yield Label(Content(f"{title} from {who}"), classes="dialog-title")
            if len(self.request.questions) == 1:
                yield from self._question_body(0, self.request.questions[0])
            else:
                with TabbedContent(id="tabs"):
                    for i, q in enumerate(self.request.questions):
                        with TabPane(Content(visible(q.header) if q.header else f"Q{i + 1}"), id=f"q{i}"):
                            yield from self._question_body(i, q)
            yield Static(id="summary", classes="dialog-hint")
            tab = " · Tab next question" if len(self.request.questions) > 1 else ""
            yield Static(f"1-9 pick{tab} · Enter submit (twice) · Ctrl+R reject · Esc close", classes="dialog-hint")

    def _question_body(self, index: int, q: QuestionInfo) -> ComposeResult:
        with VerticalScroll(classes="question-body"):
            yield Static(shown(q.question, "bold", multiline=True), classes="question-text")
            yield Static(self._options_text(index), id=f"options-{index}")
            if q.custom:
                yield Input(placeholder="your own answer (optional)", id=f"custom-{index}", classes="custom-answer")

    def _options_text(self, index: int) -> Text:
        q = self.request.questions[index]
        text = Text()
        for i, option in enumerate(q.options):
            mark = (
                ("[x]" if q.multiple else "(•)")
                if i in self.draft.selected[index]
                else ("[ ]" if q.multiple else "( )")
            )
            text.append(f" {i + 1} {mark} ", style="bold" if i in self.draft.selected[index] else "dim")
            text.append_text(shown(option.label, "bold" if i in self.draft.selected[index] else ""))
            if option.description:
                text.append_text(Text.assemble("  ", shown(option.description, multiline=True), style="dim"))
            text.append("\n")
        text.append("several answers allowed" if q.multiple else "one answer", style="italic dim")
        return text

    def on_mount(self) -> None:
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        answers = self.draft.answers(self.request)
        table = Table.grid(padding=(0, 1))
        for q, a in zip(self.request.questions, answers, strict=True):
            answers = Text(", ").join(shown(label) for label in a) if a else Text("—")
            table.add_row(shown(q.header or q.question[:30], "dim"), answers)
        if self.confirming:
            table.add_row("", Text("Press Enter again to send these answers.", style="bold"))
        self.query_one("#summary", Static).update(table)

    def action_pick(self) -> None:  # pragma: no cover - replaced by on_key for digits
        pass

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if isinstance(self.focused, Input) or not (isinstance(key, str) and key.isdigit() and key != "0"):
            return
        self._pick(int(key) - 1)
        getattr(event, "stop", lambda: None)()

    def _pick(self, option: int) -> None:
        q = self.request.questions[self.current]
        if option >= len(q.options):
            self.notify(f"Question {self.current + 1} has {len(q.options)} options.", severity="warning")
            return
        chosen = self.draft.selected[self.current]
        if q.multiple:
            chosen ^= {option}
        else:
            chosen.clear()
            chosen.add(option)
        self.confirming = False
        self.query_one(f"#options-{self.current}", Static).update(self._options_text(self.current))
        self._refresh_summary()
        if not q.multiple and self.current + 1 < len(self.request.questions):
            self.action_tab(1)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("custom-"):
            index = int(event.input.id.split("-", 1)[1])
            self.draft.custom[index] = event.value
            q = self.request.questions[index]
            if event.value.strip() and not q.multiple:
                self.draft.selected[index].clear()
                self.query_one(f"#options-{index}", Static).update(self._options_text(index))
            self.confirming = False
            self._refresh_summary()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or "q0"
        self.current = int(pane[1:])

    def action_tab(self, delta: int) -> None:
        n = len(self.request.questions)
        if n < 2:
            return
        self.current = (self.current + delta) % n
        self.query_one("#tabs", TabbedContent).active = f"q{self.current}"

    def action_submit(self) -> None:
        answers = self.draft.answers(self.request)
        missing = [i + 1 for i, a in enumerate(answers) if not a]
        if missing:
            self.notify(f"Answer question {missing[0]} first (or Ctrl+R to reject).", severity="warning")
            self.current = missing[0] - 1
            if len(self.request.questions) > 1:
                self.query_one("#tabs", TabbedContent).active = f"q{self.current}"
            return
        if not self.confirming:
            self.confirming = True
            self._refresh_summary()
            return
        self.dismiss(("reply", answers))

    def action_reject(self) -> None:
        self.dismiss(("reject", []))

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, generated from the bindings so it cannot go stale."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog-screen")
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


# ---------------------------------------------------------------------------------------------
# the pool: who is attached, what was decided, the policy, the rules
# ---------------------------------------------------------------------------------------------


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
    """A full-height dialog around one table: the look every pool screen shares.

    Subclasses say what the rows are (:meth:`load_rows`); with ``refresh_every`` the rows are
    reloaded on a timer while the screen is open (only repainted when they changed), so a
    screen left open keeps telling the truth about other processes.
    """

    BINDINGS = [Binding("escape,q", "close", "Close")]

    TITLE = ""
    HINT = "Esc to close"
    EMPTY = "Nothing to show."
    COLUMNS: tuple[str, ...] = ()
    refresh_every: float | None = None

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")
        self._shown: list[tuple[str, tuple[RenderableType, ...]]] | None = None

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
        self.reload()
        if self.refresh_every:
            self.set_interval(self.refresh_every, self.reload)
        table.focus()

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


class WorkersScreen(TableScreen):
    """Every front end attached to the pool: the agents' MCP workers and the dashboards."""

    TITLE = "Attached front ends"
    HINT = "Refreshes every second · Esc to close"
    EMPTY = "Nothing is attached. An agent attaches when its MCP client starts `orchestrator-tui mcp`."
    COLUMNS = ("Kind", "Client", "Version", "PID", "Attached", "In flight", "For")
    refresh_every = 1.0

    def __init__(
        self,
        members: Callable[[], list[Member]],
        describe_call: Callable[[str], str] = str,
        *,
        pool_name: str = "",
        own_pid: int | None = None,
    ) -> None:
        super().__init__()
        self._members = members
        self._describe_call = describe_call
        self._pool_name = pool_name
        self._own_pid = own_pid
        self._counts = (0, 0)

    def load_rows(self) -> list[tuple[str, tuple[RenderableType, ...]]]:
        now = time.time()
        members = self._members()
        self._counts = (sum(m.kind == "agent" for m in members), sum(m.kind == "human" for m in members))
        rows: list[tuple[str, tuple[RenderableType, ...]]] = []
        for m in members:
            kind = Text("agent", style="bold") if m.kind == "agent" else Text("human", style="dim")
            # The name and version are what the agent's MCP `initialize` said.
            client = shown(m.client_name or ("MCP client (not identified yet)" if m.kind == "agent" else "dashboard"))
            if self._own_pid is not None and m.pid == self._own_pid and m.kind == "human":
                client.append("  (this one)", style="dim")
            if m.in_flight:
                call = shown(self._describe_call(m.in_flight), "yellow")
                took = Text(duration(now - m.in_flight_since) if m.in_flight_since else "", style="yellow")
            else:
                call, took = Text("idle", style="dim"), Text("")
            attached = Text.assemble(clock(m.since, now), (f"  {duration(now - m.since)} ago", "dim"))
            version = shown(m.client_version or "—", "dim")
            rows.append((m.member_id, (kind, client, version, str(m.pid), attached, call, took)))
        return rows

    def summary(self) -> RenderableType:
        agents, humans = self._counts
        text = Text()
        if self._pool_name:
            text.append(f"Pool “{self._pool_name}”: ", style="dim")
        text.append(f"{agents} agent{'s' if agents != 1 else ''}", style="bold" if agents else "dim")
        text.append(f" · {humans} dashboard{'s' if humans != 1 else ''}", style="dim")
        return text


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
    """"bash · git status" for a permission (type and patterns), "question" for a question."""
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


class RulesScreen(TableScreen):
    """Standing decisions the pool applies to every session's future requests; `d` revokes one."""

    TITLE = "Rules"
    HINT = "d revoke the highlighted rule · Esc to close"
    EMPTY = "No rules yet. In the inbox, press m on a permission to turn your answer into a rule."
    COLUMNS = ("#", "Permission", "Pattern", "Reply", "By", "Made")

    BINDINGS = [*TableScreen.BINDINGS, Binding("d,delete", "revoke", "Revoke")]

    def __init__(self, rules: Callable[[], list[Rule]], revoke: Callable[[Rule], Awaitable[str | None]]) -> None:
        super().__init__()
        self._rules = rules
        self._revoke = revoke
        self._by_key: dict[str, Rule] = {}

    def load_rows(self) -> list[tuple[str, tuple[RenderableType, ...]]]:
        now = time.time()
        rules = self._rules()
        self._by_key = {str(rule.id): rule for rule in rules}
        return [
            (
                str(rule.id),
                (
                    Text(f"#{rule.id}", style="bold"),
                    shown(rule.permission, "bold"),
                    shown(rule.pattern),
                    rule_reply_text(rule.reply),
                    shown(rule.created_by, "dim"),
                    Text.assemble(clock(rule.created_at, now), (f"  {duration(now - rule.created_at)} ago", "dim")),
                ),
            )
            for rule in rules
        ]

    def summary(self) -> RenderableType:
        n = len(self._by_key)
        if not n:
            return ""
        return Text(
            f"{n} active rule{'s' if n != 1 else ''}, applied to every session's new requests, in this order",
            style="dim",
        )

    @work(exclusive=True, group="revoke")
    async def action_revoke(self) -> None:
        key = self.highlighted_key
        rule = self._by_key.get(key) if key else None
        if rule is None:
            self.notify("No rule to revoke.")
            return
        body = Text.assemble(
            ("Revoke ", ""),
            (f"rule #{rule.id}", "bold"),
            (": ", ""),
            (rule_reply_text(rule.reply).plain, "bold"),
            (" every ", ""),
            shown(rule.permission, "bold"),
            (" request matching ", ""),
            shown(rule.pattern, "bold"),
            ("?\n\nFrom then on, such requests wait in the inbox (or go to the agent, as the policy says).", "dim"),
        )
        if not await self.app.push_screen_wait(ConfirmScreen("Revoke rule?", body, "Revoke")):
            return
        error = await self._revoke(rule)
        if error:
            self.notify(error, title="Not revoked", severity="warning", markup=False)
        else:
            self.notify(f"Rule #{rule.id} revoked", timeout=3)
        self.reload()


class PolicyScreen(ModalScreen[None]):
    """The approval policy: where it lives, what it says in plain words, how to change it.

    ``load`` renders the policy afresh (the file may have been edited meanwhile), so `r`
    re-reads it: the way to check an edit without restarting anything.
    """

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("r", "reload", "Re-read")]

    def __init__(self, load: Callable[[], RenderableType]) -> None:
        super().__init__(classes="dialog-screen")
        self._load = load

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog policy-dialog"):
            yield Label("Approval policy", classes="dialog-title")
            with VerticalScroll(classes="policy-scroll"):
                yield Static(id="policy-body")
            yield Static("r re-read the file · Esc to close", classes="dialog-hint")

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(VerticalScroll).focus()

    def action_reload(self) -> None:
        try:
            body: RenderableType = self._load()
        except Exception as exc:  # the policy code itself failed: say so, do not crash
            body = Text(f"Could not read the policy: {exc}", style="red")
        self.query_one("#policy-body", Static).update(body)

    def action_close(self) -> None:
        self.dismiss(None)


RuleDraft = tuple[str, str]
"""(pattern, reply) chosen in :class:`MakeRuleScreen`."""


class MakeRuleScreen(ModalScreen[RuleDraft | None]):
    """Turn an answer into a rule: permission type (fixed), pattern (editable), reply.

    The sentence under the choices spells out what the rule will do, updated as you type: it is
    the confirmation, so the button can say exactly "Make rule".
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "submit", "Make rule")]

    #: A rule that allows answers each matching request "once": it does the remembering itself,
    #: so it grants exactly its pattern and stops the moment it is revoked (OpenCode's "always"
    #: would grant the request's broader patterns until the server stops).
    REPLIES = (("once", "Allow"), ("reject", "Reject"))

    def __init__(
        self,
        permission: str,
        title: str,
        asked: RenderableType,
        suggestions: list[tuple[str, str]],
        pattern: str,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self._permission = permission
        self._title = title
        self._asked = asked
        #: (glob, what it means) offered under the pattern field; choosing one fills the field.
        self._suggestions = suggestions
        self._pattern = pattern

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog rule-dialog"):
            yield Label("Make a rule from this permission", classes="dialog-title")
            facts = Table.grid(padding=(0, 1))
            facts.add_column(style="dim", no_wrap=True)
            facts.add_column()
            facts.add_row("Permission", shown(self._permission, "bold"))
            facts.add_row("Asked by", shown(self._title))
            facts.add_row("Asked for", self._asked)
            yield Static(facts, classes="dialog-body")
            yield Label("Pattern  (a glob: * matches anything; every pattern of a request must match)")
            yield Input(value=self._pattern, id="rule-pattern")
            if self._suggestions:
                width = max(len(visible(glob)) for glob, _ in self._suggestions)
                yield OptionList(
                    *[
                        Option(Text.assemble((visible(glob).ljust(width), "bold"), ("  " + label, "dim")), id=glob)
                        for glob, label in self._suggestions
                    ],
                    id="rule-suggestions",
                )
            yield Label("Reply", classes="rule-label")
            with RadioSet(id="rule-reply"):
                for n, (_, label) in enumerate(self.REPLIES):
                    yield RadioButton(label, value=n == 0)
            yield Static(id="rule-summary", classes="rule-summary")
            with Horizontal(classes="dialog-buttons"):
                yield Button(Content("Make rule [ctrl+s]"), variant="primary", id="make")
                yield Button(Content("Cancel [esc]"), id="cancel")

    def on_mount(self) -> None:
        self.query_one("#rule-pattern", Input).focus()
        self._refresh_summary()

    @property
    def reply(self) -> str:
        index = self.query_one("#rule-reply", RadioSet).pressed_index
        return self.REPLIES[max(0, index)][0]

    @property
    def pattern(self) -> str:
        return self.query_one("#rule-pattern", Input).value.strip()

    def _refresh_summary(self) -> None:
        summary = self.query_one("#rule-summary", Static)
        if not self.pattern:
            summary.update(Text("Type a pattern first (* for every request of this type).", style="bold red"))
            return
        verb = {"once": "allowed", "reject": "rejected"}[self.reply]
        summary.update(
            Text.assemble(
                "From now on, every ",
                shown(self._permission, "bold"),
                " request matching ",
                shown(self.pattern, "bold"),
                " — from any session, this one included — is ",
                (verb, "bold green" if self.reply != "reject" else "bold red"),
                " by this rule, without asking, until you revoke it (R).",
            )
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        self._refresh_summary()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # Only while the person walks the suggestions: the list's own first highlight on mount
        # must not overwrite the proposed pattern.
        if event.option_list.has_focus and event.option.id:
            self.query_one("#rule-pattern", Input).value = event.option.id

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.query_one("#rule-pattern", Input).value = event.option.id
            self.query_one("#rule-reply", RadioSet).focus()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self._refresh_summary()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "make":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        if not self.pattern:
            self._refresh_summary()
            self.query_one("#rule-pattern", Input).focus()
            return
        self.dismiss((self.pattern, self.reply))

    def action_cancel(self) -> None:
        self.dismiss(None)
