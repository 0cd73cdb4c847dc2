"""What the human does to sessions from the dashboard: start, prompt, run a command, abort,
delete, find (filter, next waiting).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import App
from textual.widgets import Input

from orchestrator_tui.pool.actions import ActionError
from orchestrator_tui.tui.safe import shown, visible
from orchestrator_tui.tui.screens import (
    CommandPickerScreen,
    ConfirmScreen,
    TextPromptScreen,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.registry import Launch
    from orchestrator_tui.pool.state import Pool
    from orchestrator_tui.tui.session_list import SessionList


log = logging.getLogger(__name__)


class SessionActions(App[None]):
    """Mixed into :class:`~orchestrator_tui.tui.app.DashboardApp`: the session keys' actions."""

    # The dashboard's state this part reads and writes (set up by DashboardApp.__init__/on_mount).
    pool: Pool
    actions_: PoolActions
    known_commands: list[Any]
    bell_enabled: bool
    session_list: SessionList
    filter_input: Input
    _origins: dict[str, Launch | None]
    _dirty: set[str]
    _flush_changes: Callable[[], None]
    _schedule_flush: Callable[[], None]
    _view_changed: Callable[[], None]

    def _selected(self) -> str | None:
        sid = self.session_list.selected_id
        if sid is None:
            self.notify("Select a session first (↑/↓), or press n to start one.")
        return sid

    def _new_session_place(self) -> tuple[str | None, str | None]:
        """(directory, a session whose server it goes on) of a session started now: filtered to one
        project, it works there, on the server that project's sessions are on."""
        project = self.session_list.project_filter
        like = next(iter(self.session_list.shown), None) if project is not None else None
        return project, like

    @work(group="dialog", exclusive=True)
    async def action_new_session(self) -> None:
        project, like = self._new_session_place()
        dialog = TextPromptScreen(
            "New session",
            "what should the agent do?",
            help_text="Enter starts the session · Esc cancels",
            agents=lambda: self.actions_.agents(like, directory=project),
        )
        prompt = await self.push_screen_wait(dialog)
        if prompt:
            self._start_session(prompt, dialog.agent)

    @work(group="act")
    async def _start_session(self, prompt: str, agent: str | None = None) -> None:
        try:
            project, like = self._new_session_place()
            session = await self.actions_.new_session(prompt, directory=project, like=like, agent=agent)
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
        dialog = TextPromptScreen("Send a prompt", "message for this session", agents=lambda: self.actions_.agents(sid))
        text = await self.push_screen_wait(dialog)
        if text:
            agent = dialog.agent
            done = f"Prompt sent to {visible(agent)}" if agent else "Prompt sent"
            self._act(self.actions_.send_prompt(sid, text, agent=agent), done)

    @work(group="dialog", exclusive=True)
    async def action_run_command(self) -> None:
        sid = self._selected()
        if sid is None:
            return
        # The session's own project's commands (each directory has its own .opencode/command/).
        try:
            commands = await self.actions_.commands(sid)
        except ActionError as exc:
            self.notify(visible(str(exc), multiline=True), severity="error", markup=False)
            return
        choice = await self.push_screen_wait(CommandPickerScreen(commands))
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

    def filter_changed(self, text: str) -> None:
        """Called by the filter input itself as each character is typed (see `FilterInput`)."""
        self.session_list.set_filter(text)
        self._schedule_flush()  # the pane title counts the shown rows ("Sessions (1/3)")

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        session_list = self.session_list
        if not event.value.strip():
            event.input.display = False
        session_list.focus()

    def action_project(self) -> None:
        """Show only the selected session's project; pressed again, every project."""
        session_list = self.session_list
        if session_list.project_filter is not None:
            self.set_project(None)
            return
        sid = self._selected()
        if sid is None:
            return
        row = session_list.rows.get(sid)
        project = row.project if row is not None else None
        if project is None:
            self.notify("OpenCode has not said which project this session is in yet.")
            return
        self.set_project(project)

    def set_project(self, project: str | None) -> None:
        """Limit the view (the list and the inbox) to one project, or show every project.

        The inbox follows the list: what a filtered dashboard does not show, it must not be
        counted on to answer (the approval policy asks each dashboard what it shows)."""
        self.session_list.set_project(project)
        self._view_changed()
        if project is None:
            self.notify("Every project's sessions", timeout=3)
        else:
            self.notify(f"Only {visible(project)} (f shows every project)", timeout=4, markup=False)

    def action_group(self) -> None:
        """Group the sessions by project, or list them newest first."""
        grouped = not self.session_list.grouped
        self.session_list.set_grouped(grouped)
        self._schedule_flush()
        self.notify("Grouped by project" if grouped else "Newest first", timeout=3)

    def action_toggle_bell(self) -> None:
        self.bell_enabled = not self.bell_enabled
        self.notify(f"Terminal bell {'on' if self.bell_enabled else 'off'}")
