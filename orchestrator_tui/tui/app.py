"""The dashboard: every session of the pool live, and every request waiting for a human.

Data flow: the pool reduces events as they arrive; this app only *reads* it. Pool change
notifications mark sessions dirty, and a short timer turns the dirty set into one screen update
(at most ~20 per second, whatever the event rate): the session list is diffed by key, the
detail pane appends new text, the inbox is rebuilt only when requests changed.

This module holds the composition, the pool → screen sync and the key clock; each other concern
is a part mixed into :class:`DashboardApp`: :mod:`.connection` (the server connection worker),
:mod:`.answering` (answering requests), :mod:`.pool_screens` (members, log, policy, rules),
:mod:`.session_actions` (what is done to sessions), :mod:`.palette` (the command palette).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.command import Provider
from textual.containers import Horizontal, Vertical
from textual.filter import LineFilter
from textual.widgets import Input

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.projects import in_project
from orchestrator_tui.pool.registry import Launch, Registry, Showing
from orchestrator_tui.pool.rules import RuleEngine
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import Changes
from orchestrator_tui.tui.answering import Answering
from orchestrator_tui.tui.attention import Attention
from orchestrator_tui.tui.connection import HEALTH_INTERVAL, Connection
from orchestrator_tui.tui.keys import KeyClock, bindings, help_sections
from orchestrator_tui.tui.palette import DashboardCommands
from orchestrator_tui.tui.pool_screens import MEMBERS_INTERVAL, PoolScreens
from orchestrator_tui.tui.render import permission_title
from orchestrator_tui.tui.safe import ControlFilter, visible
from orchestrator_tui.tui.screens import HelpScreen
from orchestrator_tui.tui.session_actions import SessionActions
from orchestrator_tui.tui.session_list import FilterInput, Row, SessionList, row_state
from orchestrator_tui.tui.widgets import DetailPane, Inbox, KeyFooter, ServerState, StatusLine

log = logging.getLogger(__name__)

#: Screen refresh period for pool changes (coalesced): ~20 updates per second at most.
REFRESH_INTERVAL = 0.05
#: How long rows wait for the first full reload (which builds them all once) before changes
#: build them as they come: the pool's own server may be slow to start or to be kept by another
#: front end, and the other servers' sessions must show meanwhile.
ROWS_WAIT = 1.5


def styles_dir() -> Path:
    """`styles/` beside the package in a checkout, or packaged inside it in a wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "styles", here.parents[1] / "styles"):
        if (candidate / "app.tcss").exists():
            return candidate
    return here.parents[1] / "styles"


class DashboardApp(Connection, Answering, Attention, PoolScreens, SessionActions, App[None]):
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

    #: Every key of the main screen, from the one key table (footer, palette and help agree).
    BINDINGS: ClassVar[list[BindingType]] = list(bindings())

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
        project: str | None = None,
        notify_command: str | None = None,
    ) -> None:
        super().__init__()
        #: The project the view opens filtered to (``--project``); f clears it.
        self._initial_project = project
        #: What this dashboard last told the pool it shows (the policy's "a human sees it").
        self._showing: Showing | None = None
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
        #: False until the first full reload (rows built before it would all be built again),
        #: the pool's own server found down, or ROWS_WAIT (the other servers' rows must show).
        self._loaded = False
        self._detail_pending = False
        self._seen_requests: set[str] = set()
        self._origins: dict[str, Launch | None] = {}
        self._unknown_origin_checked = 0.0
        self.server_state = ServerState()
        self.known_commands: list[Any] = []
        self.ready = asyncio.Event()
        self._unsubscribe: Callable[[], None] = lambda: None
        #: When the key being handled was pressed (the inbox's keys carry it to the answer).
        self.key_clock = KeyClock()
        #: Requests whose answer from here is on its way: more presses on them do nothing.
        self._answering: set[str] = set()
        #: When the dashboard last said "look first" (one notice per burst of early presses).
        self._too_soon_said = -1e9
        self._control_filter = ControlFilter()
        #: Calling the human when a request waits (bell, desktop, --notify-command), the status file.
        self._setup_attention(notify_command)

    # ------------------------------------------------------------------ layout

    def get_line_filters(self) -> Sequence[LineFilter]:
        # Last line of defence: no control character reaches the terminal, whatever widget drew it.
        return [*super().get_line_filters(), self._control_filter]

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status-line")
        with Horizontal(id="main"):
            with Vertical(id="sessions-pane"):
                yield FilterInput(
                    self.filter_changed,
                    placeholder="filter: fuzzy match on title, path, id, origin, status",
                    id="filter",
                )
                yield SessionList(id="sessions")
            yield DetailPane(id="detail")
        yield Inbox(self.key_clock, id="inbox")
        yield KeyFooter()

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
        self.session_list.project_filter = self._initial_project
        self.session_list.show_server = len(self.service.links) > 1
        self.session_list.focus()
        self._unsubscribe = self.pool.subscribe(self._on_pool_changes)
        self.set_interval(30, self.session_list.tick)
        self.set_interval(HEALTH_INTERVAL, self._health_check)
        self.set_interval(MEMBERS_INTERVAL, self._count_members)
        self._count_members()
        self._refresh_status()
        self.set_timer(ROWS_WAIT, self._open_rows)
        self._start_attention()
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
        await self._stop_attention()
        if self.rule_engine is not None:
            await self.rule_engine.stop()
        if self._owns_service:
            # Stop the managed server with the app, whatever way the app ends.
            try:
                await asyncio.wait_for(self.service.close(), 5.0)
            except (TimeoutError, Exception):
                log.warning("closing the pool service took too long", exc_info=True)

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
        if self._loaded:
            dirty, removed = self._dirty, self._removed
            self._dirty, self._removed = set(), set()
        else:  # kept for the first full reload (or until the own server is found down)
            dirty, removed = set(), set()
        if self._requests_dirty and self._loaded:
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
        counts = (len(self.pool.sessions), len(session_list.shown), session_list.project_filter)
        if self._status_dirty or counts != getattr(self, "_counts", None):
            self._counts = counts
            self._status_dirty = False
            self._refresh_status()
            total, shown, project = counts
            filtered = session_list.filter_text or project is not None
            label = f"{shown}/{total}" if filtered else str(total)
            where = f" · {Path(project).name or project}" if project is not None else ""
            self.sessions_pane.border_title = visible(f"Sessions ({label}){where}")
            self._publish_showing()
        selected = session_list.selected_id
        if (selected is not None and (selected in dirty or selected in removed)) or (selected is None and removed):
            self._refresh_detail()

    def _open_rows(self) -> None:
        """Build rows as changes come from now on, without waiting for the first full reload."""
        if not self._loaded:
            self._loaded = True
            self._schedule_flush()

    def _full_reload(self) -> None:
        # Every row is built here: what was marked changed until now is covered.
        self._loaded = True
        self._dirty, self._removed = set(), set()
        self._lookup_origins(set(self.pool.sessions), force=True)
        rows = {sid: row for sid in self.pool.sessions if (row := self._row(sid)) is not None}
        self.session_list.set_rows(rows)
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
            state=row_state(view, self.pool.needs_input(sid), self.pool.reachable(sid)),
            title=(info.title if info else "") or sid,
            origin=launch.origin if launch else "other",
            client=launch.client_name if launch and launch.origin == "agent" else None,
            updated=info.time.updated if info else None,
            path=(info.path or "") if info else "",
            project=view.project,
            directory=view.directory,
            server=view.server if self.session_list.show_server else None,
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
        """Every pending request the view shows (all, or its project's), oldest first (ids are
        time-ordered in OpenCode)."""
        requests: list[PermissionRequest | QuestionRequest] = [
            *self.pool.permissions.values(),
            *self.pool.questions.values(),
        ]
        project = self.session_list.project_filter
        if project is not None:
            sessions = self.pool.sessions
            requests = [
                r
                for r in requests
                if (view := sessions.get(r.sessionID)) is not None and in_project(view.directory, project)
            ]
        return sorted(requests, key=lambda r: r.id[4:])

    def _refresh_inbox(self) -> None:
        pending = self._pending()
        titles = {}
        for request in pending:
            view = self.pool.sessions.get(request.sessionID)
            titles[request.sessionID] = (view.title if view else "") or request.sessionID
        self.inbox.update_requests(pending, titles)
        self._publish_showing(pending)
        new = [r for r in pending if r.id not in self._seen_requests]
        self._seen_requests = {r.id for r in pending}
        self._answering &= self._seen_requests
        if new and self.ready.is_set():
            self.requests_arrived(new)  # the human is called for those still waiting in a moment

    def _other_servers(self) -> tuple[tuple[str, str], ...]:
        """(name, stream state) of each server the pool follows besides its own, for the status line."""
        servers = self.pool.servers
        others = [name for name, link in self.service.links.items() if not link.primary]
        return tuple((name, servers.get(name, ("connecting", ""))[0]) for name in others)

    def _view_changed(self) -> None:
        """The view's scope changed (a project filter): the inbox, the counts and what the pool
        is told this dashboard shows follow at once."""
        self._requests_dirty = True
        self._status_dirty = True
        self._flush_changes()

    def _publish_showing(self, pending: Sequence[PermissionRequest | QuestionRequest] | None = None) -> None:
        """Tell the pool what this dashboard shows (see :class:`~orchestrator_tui.pool.registry.Showing`).

        An agent's call waits for a human only on a request some dashboard shows; written only
        when it changed (a tiny row update in the registry).
        """
        membership = self.service.membership
        if membership is None or self.registry is None:
            return
        if pending is None:
            pending = self._pending()
        project = self.session_list.project_filter
        showing = Showing(
            requests=frozenset(r.id for r in pending),
            projects=(project,) if project is not None else None,
            connected=self.pool.connection_state == "connected",
        )
        if showing == self._showing:
            return
        try:
            self.registry.show(membership.member_id, showing)
        except sqlite3.Error:
            log.warning("could not tell the pool what this dashboard shows", exc_info=True)
            return
        self._showing = showing

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
                others=self._other_servers(),
            )
        else:
            state = ServerState(
                **{**state.__dict__, "sessions": len(self.pool.sessions), "pool_broken": self.pool_problem is not None}
            )
        self.status_line.show(state)
        if state.stream != "down":
            self.session_list.set_placeholder(None)

    def _detail_follows(self) -> None:
        self._detail_pending = False
        if self.is_running:
            self._refresh_detail()

    def _refresh_detail(self) -> None:
        sid = self.session_list.selected_id
        view = self.pool.sessions.get(sid) if sid else None
        row = self.session_list.rows.get(sid) if sid else None
        if view is None:
            self.detail.show(None, None, [])
            return
        perms, questions = self.pool.pending_for(view.id)
        pending = [permission_title(p) for p in perms] + ["question" for _ in questions]
        launch = self._origins.get(view.id)
        self.detail.show(view, row, pending, client_version=launch.client_version if launch else None)

    @on(SessionList.Highlighted)
    def _on_highlight(self, event: SessionList.Highlighted) -> None:
        # The detail pane is most of a cursor move's work (its facts and its text rebuilt): it
        # follows once the list's new cursor row is on screen, once for a burst of moves
        # (a held arrow key), so the list answers the key first. The inbox follows at once.
        if not self._detail_pending:
            self._detail_pending = True
            self.call_after_refresh(self._detail_follows)
        if event.session_id:
            perms, questions = self.pool.pending_for(event.session_id)
            first = (perms or questions or [None])[0]
            if first is not None:
                self.inbox.select(first.id)

    # ------------------------------------------------------------------ keys

    def on_key(self, event: events.Key) -> None:
        # Runs before the app's bindings: the actions read when this key was pressed (Textual
        # stamps each key when it arrives), not when a busy app got round to it.
        self.key_clock.pressed(event.time)
        self.call_next(self.key_clock.handled)

    async def action_inbox(self, action: str) -> None:
        """Run one of the inbox's own key actions: they act on its highlighted request wherever
        the focus is on this screen, so they are bound here (tui/keys.py, owner "inbox")."""
        await self.run_action(action, self.inbox)

    def _session_title(self, session_id: str) -> str:
        """A session's title for display (escaped), or its id."""
        view = self.pool.sessions.get(session_id)
        return visible((view.title if view else "") or session_id)

    # ------------------------------------------------------------------ help

    def action_help(self) -> None:
        self.open_page("help", lambda: HelpScreen(help_sections()))
