"""The dashboard: every session of the pool live, and every request waiting for a human.

Data flow: the pool reduces events as they arrive; this app only *reads* it. Pool change
notifications mark sessions dirty, and a short timer turns the dirty set into one screen update
(at most ~20 per second, whatever the event rate): the session list is diffed by key, the
detail pane appends new text, the inbox is rebuilt only when requests changed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.filter import LineFilter
from textual.markup import escape as escape_markup
from textual.widgets import Footer, Input, OptionList

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.actions import ActionError, PoolActions
from orchestrator_tui.pool.answers import AlreadyAnswered, Gone
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.policy import ApprovalPolicy, PolicyError, load_policy, policy_path
from orchestrator_tui.pool.registry import Launch, Registry, Rule
from orchestrator_tui.pool.rules import Applied, RuleEngine
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import Changes
from orchestrator_tui.tui.render import (
    permission_summary,
    permission_title,
    render_policy,
)
from orchestrator_tui.tui.safe import ControlFilter, shown, visible
from orchestrator_tui.tui.screens import (
    CommandPickerScreen,
    ConfirmScreen,
    DecisionLogScreen,
    HelpScreen,
    MakeRuleScreen,
    PolicyScreen,
    QuestionScreen,
    RulesScreen,
    TextPromptScreen,
    WorkersScreen,
)
from orchestrator_tui.tui.session_list import Row, SessionList, row_state
from orchestrator_tui.tui.widgets import SETTLE_SECONDS, DetailPane, Inbox, ServerState, StatusLine

log = logging.getLogger(__name__)

#: Screen refresh period for pool changes (coalesced): ~20 updates per second at most.
REFRESH_INTERVAL = 0.05
HEALTH_INTERVAL = 5.0
#: How often the attached front ends are counted (one small SQLite read, off the refresh path).
MEMBERS_INTERVAL = 1.0

REPLY_WORDS = {"once": "Allowed once", "always": "Allowed always", "reject": "Rejected"}


def styles_dir() -> Path:
    """`styles/` beside the package in a checkout, or packaged inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "styles", here.parents[1] / "styles"):
        if (candidate / "app.tcss").exists():
            return candidate
    return here.parents[1] / "styles"


class DashboardCommands(Provider):
    """Command-palette entries for every dashboard action, plus one per OpenCode command."""

    def _entries(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = self.app
        assert isinstance(app, DashboardApp)
        entries = [
            ("New session…", "start a session with a prompt", app.action_new_session),
            ("Send prompt to selected session…", "type a follow-up", app.action_send_prompt),
            ("Run a command in selected session…", "pick from list_commands", app.action_run_command),
            ("Abort selected session", "stop the current turn", app.action_abort),
            ("Delete selected session…", "with confirmation", app.action_delete),
            ("Jump to next session needing input", "◆", app.action_next_waiting),
            ("Filter sessions…", "fuzzy search", app.action_filter),
            ("Allow once", "the highlighted permission, or all marked", partial(app.action_permission, "once")),
            ("Allow always…", "the highlighted permission, or all marked", partial(app.action_permission, "always")),
            ("Reject…", "the highlighted request, or all marked", app.action_reject),
            ("Mark / unmark request", "space: select for a batch answer", app.action_toggle_mark),
            ("Mark all like this request", "*: identical ones (same diff, command…)", app.action_mark_similar),
            ("Make a rule from this permission…", "m: answer future matching requests", app.action_make_rule),
            ("Show attached front ends", "w: agents' MCP workers and dashboards", app.action_workers),
            ("Show decision log", "L: every answer, who gave it, how", app.action_decision_log),
            ("Show approval policy", "P: what agents may answer themselves", app.action_policy),
            ("Show rules", "R: list and revoke standing decisions", app.action_rules),
            ("Toggle terminal bell", "for new requests", app.action_toggle_bell),
            ("Help", "every key", app.action_help),
        ]
        for command in app.known_commands:
            # Names and descriptions come from the project's files: escaped, and never markup
            # (the palette reads plain strings as markup, which can style text and bind clicks).
            description = command.description.split("\n", 1)[0] if command.description else "OpenCode command"
            entries.append(
                (
                    f"Run /{visible(command.name)}",
                    escape_markup(visible(description)),
                    partial(app.run_named_command, command.name),
                )
            )
        return entries

    async def discover(self) -> Hits:
        for name, help_text, callback in self._entries():
            yield DiscoveryHit(Content(name), callback, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._entries():
            score = matcher.match(name)
            if score > 0:
                # Matcher.highlight parses its argument as markup: only for names without any.
                prompt = matcher.highlight(name) if "[" not in name else Content(name)
                yield Hit(score, prompt, callback, text=name, help=help_text)


class DashboardApp(App[None]):
    TITLE = "orchestrator-tui"
    CSS_PATH = str(styles_dir() / "app.tcss")
    COMMANDS: ClassVar[set[type[Provider]] | set[Callable[[], type[Provider]]]] = {
        *App.COMMANDS,
        DashboardCommands,
    }

    #: Responsive classes on every screen (styles/app.tcss): below 100 columns the detail pane
    #: gives its room to the session list; below 32 rows the inbox and the detail pane shrink.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (32, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "permission('once')", "Allow once"),
        Binding("a", "permission('always')", "Allow always"),
        Binding("r", "reject", "Reject"),
        Binding("enter", "answer", "Answer", show=False),
        Binding("space", "toggle_mark", "Mark", show=False),
        Binding("asterisk", "mark_similar", "Mark similar", show=False, key_display="*"),
        Binding("m", "make_rule", "Make rule", show=False),
        Binding("w", "workers", "Attached", show=False),
        Binding("L,shift+l", "decision_log", "Decision log", show=False, key_display="L"),
        Binding("P,shift+p", "policy", "Policy", show=False, key_display="P"),
        Binding("R,shift+r", "rules", "Rules", show=False, key_display="R"),
        Binding("n", "new_session", "New"),
        Binding("p", "send_prompt", "Prompt"),
        Binding("c", "run_command", "Command"),
        Binding("x", "abort", "Abort"),
        Binding("d", "delete", "Delete", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("i", "next_waiting", "Next ◆"),
        Binding("tab", "focus_next", "Focus", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        service: PoolService,
        actions: PoolActions,
        registry: Registry | None = None,
        *,
        bell: bool = True,
        on_ready: Callable[[DashboardApp], Any] | None = None,
        owns_service: bool = False,
        policy_path: Path | None = None,
        rule_engine: RuleEngine | None = None,
        pool_problem: str | None = None,
    ) -> None:
        super().__init__()
        #: Why the pool's state (folder, registry) cannot be used, with the fix; None when it can.
        #: The dashboard then fails closed: no rules run, every request waits for the human.
        self.pool_problem = pool_problem
        #: Applies the pool's rules to requests as they appear (one per front end; started once
        #: connected). Built here when not given, so every dashboard with a registry runs one.
        if rule_engine is None and registry is not None:
            rule_engine = RuleEngine(service, registry, channel="dashboard")
        if rule_engine is not None and rule_engine.on_applied is None:
            rule_engine.on_applied = self._rule_applied
        self.rule_engine = rule_engine
        #: The approval policy file shown by the policy screen (None: the pool's default place).
        self.policy_path = policy_path
        #: MCP workers attached to the pool, as last counted (status line).
        self.agents_attached = 0
        self._owns_service = owns_service
        self.service = service
        self.pool = service.pool
        self.actions_ = actions
        self.registry = registry
        self.bell_enabled = bell
        self._on_ready = on_ready
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._requests_dirty = True
        self._status_dirty = True
        self._flush_pending = False
        self._seen_requests: set[str] = set()
        self._origins: dict[str, Launch | None] = {}
        self._unknown_origin_checked = 0.0
        self.server_state = ServerState()
        self.known_commands: list[Any] = []
        self.ready = asyncio.Event()
        self._unsubscribe: Callable[[], None] = lambda: None
        #: When the key being handled was pressed (None outside a key press: the palette, a click).
        self._pressed_at: float | None = None
        #: Requests whose answer from here is on its way: more presses on them do nothing.
        self._answering: set[str] = set()
        #: When the dashboard last said "look first" (one notice per burst of early presses).
        self._too_soon_said = -1e9
        self._control_filter = ControlFilter()

    # ------------------------------------------------------------------ layout

    def get_line_filters(self) -> Sequence[LineFilter]:
        # Last line of defence: no control character reaches the terminal, whatever widget drew it.
        return [*super().get_line_filters(), self._control_filter]

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status-line")
        with Horizontal(id="main"):
            with Vertical(id="sessions-pane"):
                yield Input(placeholder="filter: fuzzy match on title, path, id, origin, status", id="filter")
                yield SessionList(id="sessions")
            yield DetailPane(id="detail")
        yield Inbox(id="inbox")
        yield Footer()

    def on_mount(self) -> None:
        # Keep references: while a dialog is open, App.query_one looks at the dialog's screen.
        self.session_list = self.query_one(SessionList)
        self.inbox = self.query_one(Inbox)
        self.detail = self.query_one(DetailPane)
        self.status_line = self.query_one(StatusLine)
        self.filter_input = self.query_one("#filter", Input)
        self.sessions_pane = self.query_one("#sessions-pane")
        self.sessions_pane.border_title = "Sessions"
        self.query_one("#detail").border_title = "Detail"
        self.filter_input.display = False
        self.session_list.focus()
        self._unsubscribe = self.pool.subscribe(self._on_pool_changes)
        self.set_interval(30, self.session_list.tick)
        self.set_interval(HEALTH_INTERVAL, self._health_check)
        self.set_interval(MEMBERS_INTERVAL, self._count_members)
        self._count_members()
        self._refresh_status()
        if self.pool_problem is not None:
            self.notify(
                f"{self.pool_problem}\nUntil it is fixed no rules run and every request waits for you here "
                "(P shows the policy in force).",
                title="Pool state unavailable",
                severity="error",
                timeout=15,  # the status line keeps saying so; P has the whole story
                markup=False,
            )
        self._connect()

    async def on_unmount(self) -> None:
        self._unsubscribe()
        if self.rule_engine is not None:
            await self.rule_engine.stop()
        if self._owns_service:
            # Stop the managed server with the app, whatever way the app ends.
            try:
                await asyncio.wait_for(self.service.close(), 5.0)
            except (TimeoutError, Exception):
                log.warning("closing the pool service took too long", exc_info=True)

    # ------------------------------------------------------------------ server connection

    @work(exclusive=True, group="connect")
    async def _connect(self) -> None:
        delay = 1.0
        while True:
            try:
                snapshot = await self.service.acquire()
            except ServerUnavailable as exc:
                self._server_down(exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self.server_state = ServerState(
                mode="managed" if snapshot.managed is not None else "attached",
                url=snapshot.base_url,
                version=snapshot.version or "",
                stream=self.pool.connection_state,
            )
            self._status_dirty = True
            self._schedule_flush()
            await self.service.wait_stream(10)
            await self.service.resync()
            self._full_reload()
            self._load_commands()
            if self.rule_engine is not None:
                self.rule_engine.start()
            if not self.ready.is_set():
                self.ready.set()
                if self._on_ready is not None:
                    result = self._on_ready(self)
                    if asyncio.iscoroutine(result):
                        await result
            return

    def _server_down(self, exc: ServerUnavailable, retry_in: float) -> None:
        if not self.is_running:  # shutting down: the panes may already be gone
            return
        error = str(exc)
        if exc.fix is None:
            fix = "The dashboard keeps retrying; it will connect as soon as OpenCode answers."
        else:
            fix = f"Fix: {exc.fix}" + ("" if exc.fix.endswith(".") else ".")
        # "retrying in" first: the status line cuts long errors (the detail pane has them whole).
        self.server_state = ServerState(
            stream="down", detail=f"retrying in {retry_in:.0f}s · {error.splitlines()[0][:160]}"
        )
        self._refresh_status()
        self.session_list.set_placeholder(f"Not connected to OpenCode. {fix}")
        # The error may quote what the server (or its config) printed.
        self.detail.query_one("#detail-info").update(
            Text.assemble(
                ("OpenCode is not available\n\n", "bold red"), shown(error, multiline=True), "\n\n", (fix, "bold")
            )
        )

    async def _health_check(self) -> None:
        if not self.ready.is_set():
            return
        try:
            snapshot = await self.service.acquire()
        except ServerUnavailable as exc:
            self._server_down(exc, HEALTH_INTERVAL)
            return
        if snapshot.base_url != self.server_state.url or self.server_state.stream == "down":
            self.server_state = ServerState(
                mode="managed" if snapshot.managed is not None else "attached",
                url=snapshot.base_url,
                version=snapshot.version or "",
                stream=self.pool.connection_state,
            )
            self._status_dirty = True
            self._schedule_flush()

    @work(group="commands")
    async def _load_commands(self) -> None:
        try:
            self.known_commands = await self.actions_.commands()
        except ActionError as exc:
            log.warning("could not load commands: %s", str(exc))

    # ------------------------------------------------------------------ pool → screen

    def _on_pool_changes(self, changes: Changes) -> None:
        self._dirty |= changes.sessions
        self._removed |= changes.removed
        self._requests_dirty |= changes.requests
        self._status_dirty |= changes.connection or changes.requests
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.set_timer(REFRESH_INTERVAL, self._flush_changes)

    def _flush_changes(self) -> None:
        self._flush_pending = False
        if not self.is_running:
            # The app is shutting down (screens are unmounted before the app's own timers stop):
            # there is nothing left to draw into.
            return
        session_list = self.session_list
        dirty, removed = self._dirty, self._removed
        self._dirty, self._removed = set(), set()
        if self._requests_dirty:
            # A request changes its session's glyph too.
            dirty |= {r.sessionID for r in self._pending()}
        if dirty or removed:
            self._lookup_origins(dirty)
            rows = {sid: self._row(sid) for sid in dirty if sid in self.pool.sessions}
            rows = {sid: row for sid, row in rows.items() if row is not None}
            session_list.update_rows(rows, removed)
        if self._requests_dirty:
            self._requests_dirty = False
            self._refresh_inbox()
        counts = (len(self.pool.sessions), len(session_list.shown))
        if self._status_dirty or counts != getattr(self, "_counts", None):
            self._counts = counts
            self._status_dirty = False
            self._refresh_status()
            total, shown = counts
            label = f"{shown}/{total}" if session_list.filter_text else str(total)
            self.sessions_pane.border_title = f"Sessions ({label})"
        selected = session_list.selected_id
        if (selected is not None and (selected in dirty or selected in removed)) or (selected is None and removed):
            self._refresh_detail()

    def _full_reload(self) -> None:
        self._lookup_origins(set(self.pool.sessions), force=True)
        rows = {sid: row for sid in self.pool.sessions if (row := self._row(sid)) is not None}
        self.session_list.set_rows(rows)
        # Everything loaded so far lives as long as the app: move it out of the garbage
        # collector's reach. With 10,000 sessions a full collection otherwise pauses the UI
        # for 100+ ms at random moments (measured by benchmarks/dashboard.py).
        gc.freeze()
        self._requests_dirty = True
        self._status_dirty = True
        self._flush_changes()
        self._refresh_detail()

    def _row(self, sid: str) -> Row | None:
        view = self.pool.sessions.get(sid)
        if view is None:
            return None
        info = view.info
        launch = self._origins.get(sid)
        tokens = info.tokens if info is not None else None
        return Row(
            id=sid,
            state=row_state(view, self.pool.needs_input(sid)),
            title=(info.title if info else "") or sid,
            origin=launch.origin if launch else "other",
            client=launch.client_name if launch and launch.origin == "agent" else None,
            updated=info.time.updated if info else None,
            path=(info.path or "") if info else "",
            additions=info.summary.additions if info and info.summary else 0,
            deletions=info.summary.deletions if info and info.summary else 0,
            tokens=(tokens.input + tokens.output + tokens.reasoning) if tokens else 0,
            cost=(info.cost or 0.0) if info else 0.0,
        )

    def _lookup_origins(self, ids: Iterable[str], *, force: bool = False) -> None:
        """Who launched each session, from the shared registry (cached; unknowns re-checked)."""
        if self.registry is None:
            return
        wanted = [sid for sid in ids if force or sid not in self._origins or self._origins[sid] is None]
        now = time.monotonic()
        if not force:
            fresh = [sid for sid in wanted if sid not in self._origins]
            if now - self._unknown_origin_checked < 1.0:
                wanted = fresh
            else:
                self._unknown_origin_checked = now
        if not wanted:
            return
        try:
            found = self.registry.launches(wanted)
        except Exception:
            log.exception("registry lookup failed")
            return
        for sid in wanted:
            self._origins[sid] = found.get(sid)

    def _pending(self) -> list[PermissionRequest | QuestionRequest]:
        """Every pending request, oldest first (ids are time-ordered in OpenCode)."""
        requests: list[PermissionRequest | QuestionRequest] = [
            *self.pool.permissions.values(),
            *self.pool.questions.values(),
        ]
        return sorted(requests, key=lambda r: r.id[4:])

    def _refresh_inbox(self) -> None:
        pending = self._pending()
        titles = {}
        for request in pending:
            view = self.pool.sessions.get(request.sessionID)
            titles[request.sessionID] = (view.title if view else "") or request.sessionID
        self.inbox.update_requests(pending, titles)
        new = [r for r in pending if r.id not in self._seen_requests]
        self._seen_requests = {r.id for r in pending}
        self._answering &= self._seen_requests
        if new and self.ready.is_set():
            for request in new:
                what = permission_title(request) if isinstance(request, PermissionRequest) else "Question"
                # markup=False: a session title may contain "[...]".
                title = visible(titles[request.sessionID])
                self.notify(f"{title}: {what}", title="Waiting for you", timeout=6, markup=False)
            if self.bell_enabled:
                self.bell()

    def _refresh_status(self) -> None:
        state = self.server_state
        if state.stream != "down":
            state = ServerState(
                mode=state.mode,
                url=state.url,
                version=state.version,
                stream=self.pool.connection_state,
                detail=self.pool.connection_detail,
                waiting=len(self.pool.permissions) + len(self.pool.questions),
                sessions=len(self.pool.sessions),
                agents=self.agents_attached,
                pool_broken=self.pool_problem is not None,
            )
        else:
            state = ServerState(
                **{**state.__dict__, "sessions": len(self.pool.sessions), "pool_broken": self.pool_problem is not None}
            )
        self.status_line.show(state)
        if state.stream != "down":
            self.session_list.set_placeholder(None)

    def _refresh_detail(self) -> None:
        sid = self.session_list.selected_id
        view = self.pool.sessions.get(sid) if sid else None
        row = self.session_list.rows.get(sid) if sid else None
        if view is None:
            self.detail.show(None, None, [], 0)
            return
        perms, questions = self.pool.pending_for(view.id)
        pending = [permission_title(p) for p in perms] + ["question" for _ in questions]
        launch = self._origins.get(view.id)
        self.detail.show(view, row, pending, 0, client_version=launch.client_version if launch else None)

    @on(SessionList.Highlighted)
    def _on_highlight(self, event: SessionList.Highlighted) -> None:
        self._refresh_detail()
        if event.session_id:
            perms, questions = self.pool.pending_for(event.session_id)
            first = (perms or questions or [None])[0]
            if first is not None:
                self.inbox.select(first.id)

    @on(OptionList.OptionSelected, "#inbox-list")
    def _on_inbox_enter(self, event: OptionList.OptionSelected) -> None:
        # Enter (or a click) in the focused inbox: the list takes the key, so answer from here.
        event.stop()
        self.action_answer()

    # ------------------------------------------------------------------ requests
    #
    # A key answers only what the human has seen: the request drawn under the cursor (or, for a
    # batch, the marked requests drawn in the list) for at least SETTLE_SECONDS when the key was
    # pressed. Each action reads that synchronously, while its key is being handled; the dialogs
    # that follow (workers) get the requests it captured, never what is highlighted later.

    def on_key(self, event: events.Key) -> None:
        # Runs before the app's bindings: the actions below read when this key was pressed
        # (Textual stamps each key when it arrives), not when a busy app got round to it.
        self._pressed_at = event.time
        self.call_next(self._key_handled)

    def _key_handled(self) -> None:
        self._pressed_at = None

    def _key_time(self) -> float:
        return self._pressed_at if self._pressed_at is not None else time.monotonic()

    def current_request(self) -> PermissionRequest | QuestionRequest | None:
        inbox = self.inbox
        rid = inbox.highlighted_id
        if rid is None:
            return None
        return self.pool.permissions.get(rid) or self.pool.questions.get(rid)

    def _request_to_answer(self) -> PermissionRequest | QuestionRequest | None:
        """The highlighted request, if this key may act on it; None (and why, on screen) if not."""
        request = self.current_request()
        if request is None:
            self.notify("Nothing is waiting for an answer.")
            return None
        if request.id in self._answering:
            return None  # a press on a request already being answered: the first one counts
        at = self._key_time()
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

    def _marked_permissions(self) -> list[PermissionRequest]:
        """The marked requests still pending, in inbox order (marks of answered ones are gone)."""
        return [p for rid in self.inbox.marked_ids if (p := self.pool.permissions.get(rid)) is not None]

    def _marked_to_answer(self, marked: list[PermissionRequest]) -> list[PermissionRequest]:
        """The marked requests this key may answer: each one drawn in the list long enough."""
        at = self._key_time()
        fresh = [p for p in marked if p.id not in self._answering]
        early = [p.id for p in fresh if not self.inbox.seen_listed(p.id, at)]
        if early:
            self.inbox.too_soon(early, at)
            few = "1 marked request was" if len(early) == 1 else f"{len(early)} marked requests were"
            self._too_soon(f"{few} listed just now and not answered: look at them, then press again.")
        return [p for p in fresh if p.id not in early]

    def action_permission(self, reply: str) -> None:
        """Answer the highlighted permission, or every marked one when some are marked."""
        marked = self._marked_permissions()
        if marked:
            ready = self._marked_to_answer(marked)
            if not ready:
                return
            if reply == "always":
                self._allow_always(ready, batch=True)
            else:
                self._reply_permissions(ready, reply, None)
            return
        request = self._request_to_answer()
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

    def _session_title(self, session_id: str) -> str:
        """A session's title for display (escaped), or its id."""
        view = self.pool.sessions.get(session_id)
        return visible((view.title if view else "") or session_id)

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

    def action_reject(self) -> None:
        marked = self._marked_permissions()
        if marked:
            ready = self._marked_to_answer(marked)
            if ready:
                self._reject_dialog(ready, batch=True)
            return
        request = self._request_to_answer()
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

    def action_toggle_mark(self) -> None:
        """Mark or unmark the highlighted permission for a batch answer."""
        request = self._request_to_answer()
        if request is None:
            return
        if isinstance(request, QuestionRequest):
            self.notify("Only permissions can be answered together; answer questions one by one (Enter).")
            return
        self.inbox.set_marks(self.inbox.marked ^ {request.id})

    def action_mark_similar(self) -> None:
        """Mark every listed permission that asks for exactly what the highlighted one asks for.

        Pressed again when they are all marked already, it unmarks them.
        """
        request = self.current_request()
        if not isinstance(request, PermissionRequest):
            self.notify("Highlight a permission in the inbox first.")
            return
        if self._request_to_answer() is None:
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

    def action_make_rule(self) -> None:
        """Turn the highlighted permission into a rule the pool applies to every session."""
        request = self.current_request()
        if not isinstance(request, PermissionRequest):
            self.notify(
                "Highlight a permission in the inbox first: rules answer permissions (questions need you each time)."
            )
            return
        if self._request_to_answer() is None:
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

    def _rule_applied(self, applied: Applied) -> None:
        """A rule answered a request by itself: say which rule and for whom (it is in the log too)."""
        if not self.is_running:
            return
        rule = applied.rule
        words = {"once": "allowed", "always": "allowed", "reject": "rejected"}.get(rule.reply, rule.reply)
        who = self._session_title(applied.session_id)
        self.notify(
            f"{visible(rule.permission)} · {who}: {words} ({visible(rule.pattern)})",
            title=f"Rule #{rule.id} answered",
            timeout=4,
            markup=False,
        )

    async def _revoke_rule(self, rule: Rule) -> str | None:
        """Revoke through the pool (so every front end stops applying it); the error text, if any."""
        try:
            self.actions_.revoke_rule(rule.id)
        except ActionError as exc:
            return str(exc)
        return None

    def action_answer(self) -> None:
        request = self._request_to_answer()
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

    # ------------------------------------------------------------------ the pool: members, log, policy, rules

    def _count_members(self) -> None:
        """Count the agents attached (status line); once a second, never on the refresh path."""
        if self.registry is None:
            return
        try:
            agents = sum(1 for m in self.registry.members() if m.kind == "agent")
        except Exception:
            log.exception("could not read the pool's members")
            return
        if agents != self.agents_attached:
            self.agents_attached = agents
            self._status_dirty = True
            self._schedule_flush()

    def _describe_call(self, call: str) -> str:
        """A worker's call in flight, with session ids replaced by titles: run “Fix the typo”."""
        sessions = self.pool.sessions

        def title(match: re.Match[str]) -> str:
            sid = match.group(0)
            return f"“{self._session_title(sid)}”" if sid in sessions else sid

        return _SESSION_ID.sub(title, call)

    def _no_registry(self) -> bool:
        if self.registry is None:
            why = f": {self.pool_problem}" if self.pool_problem else ""
            self.notify(f"This dashboard runs without the pool's registry{why}", severity="warning", markup=False)
            return True
        return False

    def action_workers(self) -> None:
        if self._no_registry():
            return
        registry = self.registry
        assert registry is not None
        self.push_screen(
            WorkersScreen(
                registry.members,
                self._describe_call,
                pool_name=registry.path.parent.name,
                own_pid=os.getpid(),
            )
        )

    def action_decision_log(self) -> None:
        if self._no_registry():
            return
        registry = self.registry
        assert registry is not None
        self.push_screen(DecisionLogScreen(lambda limit: registry.decisions(limit=limit), self._session_title))

    def action_rules(self) -> None:
        if self._no_registry():
            return
        registry = self.registry
        assert registry is not None
        self.push_screen(RulesScreen(registry.rules, self._revoke_rule))

    def action_policy(self) -> None:
        self.push_screen(PolicyScreen(self._policy_view))

    def _policy_file(self) -> Path | None:
        if self.policy_path is not None:
            return self.policy_path
        return policy_path(self.registry.path.parent) if self.registry is not None else None

    def _policy_view(self) -> RenderableType:
        """The policy screen's body, read afresh from the file each time (r re-reads)."""
        if self.pool_problem is not None:
            return render_policy(ApprovalPolicy.closed(self.pool_problem), exists=False)
        path = self._policy_file()
        if path is None:
            return Text("No pool folder: the approval policy lives beside the pool's registry.", style="yellow")
        try:
            return render_policy(ApprovalPolicy.from_file(path), exists=path.exists())
        except PolicyError as exc:
            # Shown: the exact mistake, and the policy the front ends apply meanwhile (closed).
            return render_policy(load_policy(path), exists=True, error=str(exc))

    # ------------------------------------------------------------------ sessions

    def _selected(self) -> str | None:
        sid = self.session_list.selected_id
        if sid is None:
            self.notify("Select a session first (↑/↓), or press n to start one.")
        return sid

    @work(group="dialog", exclusive=True)
    async def action_new_session(self) -> None:
        prompt = await self.push_screen_wait(
            TextPromptScreen(
                "New session", "what should the agent do?", help_text="Enter starts the session · Esc cancels"
            )
        )
        if prompt:
            self._start_session(prompt)

    @work(group="act")
    async def _start_session(self, prompt: str) -> None:
        try:
            session = await self.actions_.new_session(prompt)
        except ActionError as exc:
            self.notify(visible(str(exc), multiline=True), severity="error", title="Could not start", markup=False)
            return
        self._origins.pop(session.id, None)
        self._dirty.add(session.id)
        self._flush_changes()
        self.session_list.select(session.id)

    @work(group="dialog", exclusive=True)
    async def action_send_prompt(self) -> None:
        sid = self._selected()
        if sid is None:
            return
        text = await self.push_screen_wait(TextPromptScreen("Send a prompt", "message for this session"))
        if text:
            self._act(self.actions_.send_prompt(sid, text), "Prompt sent")

    @work(group="dialog", exclusive=True)
    async def action_run_command(self) -> None:
        sid = self._selected()
        if sid is None:
            return
        if not self.known_commands:
            try:
                self.known_commands = await self.actions_.commands()
            except ActionError as exc:
                self.notify(visible(str(exc), multiline=True), severity="error", markup=False)
                return
        choice = await self.push_screen_wait(CommandPickerScreen(self.known_commands))
        if choice:
            name, arguments = choice
            self._act(self.actions_.run_command(sid, name, arguments), f"/{visible(name)} started")

    def run_named_command(self, name: str) -> None:
        sid = self._selected()
        if sid is not None:
            self._act(self.actions_.run_command(sid, name, ""), f"/{visible(name)} started")

    def action_abort(self) -> None:
        sid = self._selected()
        if sid is not None:
            self._act(self.actions_.abort(sid), "Abort requested")

    @work(group="dialog", exclusive=True)
    async def action_delete(self) -> None:
        sid = self._selected()
        if sid is None:
            return
        title = self.pool.sessions[sid].title if sid in self.pool.sessions else sid
        body = Text.assemble(
            ("Delete ", ""),
            shown(title, "bold"),
            (f" ({sid})?\n\nIts messages are removed from OpenCode; this cannot be undone.", ""),
        )
        if await self.push_screen_wait(ConfirmScreen("Delete session?", body, "Delete")):
            self._act(self.actions_.delete(sid), "Session deleted")

    @work(group="act")
    async def _act(self, coro: Any, done: str) -> None:
        try:
            await coro
        except ActionError as exc:
            self.notify(visible(str(exc), multiline=True), severity="error", title="Failed", markup=False)
            return
        self.notify(done, timeout=3, markup=False)

    def action_next_waiting(self) -> None:
        session_list = self.session_list
        sid = session_list.first_matching(lambda row: row.state == "needs-input")
        if sid is None:
            self.notify("No session is waiting for input.")
            return
        session_list.select(sid)
        session_list.focus()

    def action_filter(self) -> None:
        field = self.filter_input
        field.display = True
        field.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.session_list.set_filter(event.value)
        self._schedule_flush()  # the pane title counts the shown rows ("Sessions (1/3)")

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        session_list = self.session_list
        if not event.value.strip():
            event.input.display = False
        session_list.focus()

    def action_toggle_bell(self) -> None:
        self.bell_enabled = not self.bell_enabled
        self.notify(f"Terminal bell {'on' if self.bell_enabled else 'off'}")

    def action_help(self) -> None:
        sections = [
            (
                "Requests (the inbox, bottom)",
                [
                    ("o", "allow the highlighted permission once"),
                    ("a", "allow always (confirm lists the patterns)"),
                    ("r", "reject, optionally telling the agent why"),
                    ("enter", "answer the highlighted question"),
                    ("1-9", "in a question: pick an option"),
                    ("ctrl+s", "in a question: submit (press twice)"),
                    ("0.5 s", "keys act only on a request shown this long"),
                ],
            ),
            (
                "Several at once, and rules",
                [
                    ("space", "mark / unmark the highlighted permission"),
                    ("*", "mark all identical (same diff or command)"),
                    ("o a r", "with marks: answer all marked requests"),
                    ("m", "make a rule for matching requests, all sessions"),
                    ("R", "rules: list them, d revokes one"),
                ],
            ),
            (
                "The pool",
                [
                    ("w", "attached front ends and their calls in flight"),
                    ("L", "decision log: every answer, who gave it, how"),
                    ("P", "approval policy: what agents may answer"),
                ],
            ),
            (
                "Sessions",
                [
                    ("↑ ↓ / j k", "move"),
                    ("n", "new session with a prompt"),
                    ("p", "send a prompt to the selected session"),
                    ("c", "run a command in the selected session"),
                    ("x", "abort the selected session"),
                    ("d", "delete the selected session (asks first)"),
                    ("/", "filter: fuzzy search"),
                    ("i", "jump to the next session that needs input"),
                ],
            ),
            (
                "App",
                [
                    ("tab", "move focus between list, inbox"),
                    ("esc", "close a dialog or screen"),
                    ("ctrl+p", "command palette (every action, every command)"),
                    ("?", "this help"),
                    ("q", "quit"),
                ],
            ),
            (
                "Status glyphs",
                [
                    ("◆", "needs input"),
                    ("●", "busy"),
                    ("↻", "retrying"),
                    ("✗", "error"),
                    ("○", "idle"),
                    ("?", "unknown (not observed yet)"),
                ],
            ),
        ]
        self.push_screen(HelpScreen(sections))


_SESSION_ID = re.compile(r"\bses_[A-Za-z0-9]+")


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
