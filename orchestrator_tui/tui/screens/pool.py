"""The pool's screens: who is attached, the rules (list, revoke, make one), the approval policy.

Client names, patterns and titles come from agents and projects: shown through :func:`shown` /
:func:`visible`; what is stored (a rule's pattern) is the exact original.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

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
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
)
from textual.widgets.option_list import Option

from orchestrator_tui.pool.registry import Member, Rule
from orchestrator_tui.tui.safe import shown, visible
from orchestrator_tui.tui.screens.dialogs import ConfirmScreen
from orchestrator_tui.tui.screens.table import TableScreen, clock, duration, rule_reply_text


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

    ``load`` renders the policy afresh (the file may have been edited meanwhile): at every
    opening (the dashboard keeps the page once built), and on `r`, the way to check an edit
    without restarting anything.
    """

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("r", "reload", "Re-read")]

    def __init__(self, load: Callable[[], RenderableType]) -> None:
        super().__init__(classes="dialog-screen page-screen")
        self._load = load

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog policy-dialog"):
            yield Label("Approval policy", classes="dialog-title")
            with VerticalScroll(classes="policy-scroll"):
                yield Static(id="policy-body")
            yield Static("r re-read the file · Esc to close", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def on_screen_resume(self) -> None:
        self.action_reload()
        self.query_one(VerticalScroll).scroll_home(animate=False)

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
