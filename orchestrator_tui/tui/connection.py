"""The dashboard's connection to OpenCode: connect (retrying), watch its health, say what is wrong.

When OpenCode cannot be started or reached, the session list and the detail pane say so with the
fix, the status line says when the next try is, and the dashboard keeps retrying: no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import App

from orchestrator_tui.pool.actions import ActionError
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.tui.safe import shown
from orchestrator_tui.tui.widgets import ServerState

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.handle import Snapshot
    from orchestrator_tui.pool.rules import RuleEngine
    from orchestrator_tui.pool.service import PoolService
    from orchestrator_tui.pool.state import Pool
    from orchestrator_tui.tui.session_list import SessionList
    from orchestrator_tui.tui.widgets import DetailPane


log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0


class Connection(App[None]):
    """Mixed into :class:`~orchestrator_tui.tui.app.DashboardApp`: its server connection worker."""

    # The dashboard's state this part reads and writes (set up by DashboardApp.__init__/on_mount).
    service: PoolService
    pool: Pool
    actions_: PoolActions
    rule_engine: RuleEngine | None
    server_state: ServerState
    known_commands: list[Any]
    ready: asyncio.Event
    session_list: SessionList
    detail: DetailPane
    _on_ready: Callable[[Any], Any] | None
    _status_dirty: bool
    _open_rows: Callable[[], None]
    _full_reload: Callable[[], None]
    _refresh_status: Callable[[], None]
    _schedule_flush: Callable[[], None]

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
            self._server_up(snapshot)
            await self.service.wait_synced(10)
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
        # No full reload is coming soon: show the sessions the other servers bring meanwhile.
        self._open_rows()
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
            self._server_up(snapshot)

    def _server_up(self, snapshot: Snapshot) -> None:
        """Show the server the pool uses now: after connecting, or when the health check finds another."""
        self.server_state = ServerState(
            mode="managed" if snapshot.managed is not None else "attached",
            url=snapshot.base_url,
            version=snapshot.version or "",
            backend=snapshot.client.backend_name or "",
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

