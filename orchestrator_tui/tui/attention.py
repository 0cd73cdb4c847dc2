"""Calling the human when something starts waiting for them, and the status file of the dashboard.

A request appears in the inbox at once; the human is *called* (a notice on screen, the bell, a
desktop notification through the terminal, the ``--notify-command``) only if it still waits
:data:`ATTENTION_DELAY` seconds later. By then the rule engines of the pool (this one's and
every other front end's) have answered whatever a standing rule covers, and those requests,
gone from the pool or claimed in the registry, call nobody: a rule answering a request within a
moment must not wake anyone. The requests that start waiting together are one call: one bell,
one desktop notification, a notice each (up to :data:`MAX_NOTICES`), and one notify command run
each (:class:`~orchestrator_tui.tui.notify.NotifyCommand` runs them one at a time).

The dashboard also keeps its status file (:class:`~orchestrator_tui.pool.status.StatusFile`) in
the pool folder for ``orchestrator-tui status``; it starts and stops with the rest of this part.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.status import StatusFile
from orchestrator_tui.tui.notify import (
    PROTOCOL_ENV,
    NotifyCommand,
    osc_notification,
    request_payload,
    request_summary,
    terminal_protocol,
)
from orchestrator_tui.tui.render import permission_title
from orchestrator_tui.tui.safe import visible

if TYPE_CHECKING:
    from orchestrator_tui.pool.registry import Registry
    from orchestrator_tui.pool.service import PoolService
    from orchestrator_tui.pool.state import Pool

log = logging.getLogger(__name__)

#: How long a new request must stay pending before the human is called: time for the pool's rule
#: engines to answer what a rule covers (they do within milliseconds of the request's event).
ATTENTION_DELAY = 0.8
#: Notices on screen for one burst of requests; more are counted in one last notice.
MAX_NOTICES = 3
#: The title of the desktop notification (ours, not the model's).
DESKTOP_TITLE = "orchestrator-tui: waiting for you"


class Attention(App[None]):
    """Mixed into :class:`~orchestrator_tui.tui.app.DashboardApp`: calling the human, the status file."""

    # The dashboard's state this part reads (set up by DashboardApp.__init__/on_mount).
    pool: Pool
    service: PoolService
    registry: Registry | None
    bell_enabled: bool

    def _setup_attention(self, notify_command: str | None, env: Mapping[str, str] | None = None) -> None:
        """Called by ``DashboardApp.__init__``; ``env`` (default: ours) says which terminal this is."""
        env = os.environ if env is None else env
        #: The sequence this terminal turns into a desktop notification (None: none known).
        self.desktop_protocol = terminal_protocol(env)
        self._in_tmux = bool(env.get("TMUX"))
        #: Desktop notifications on (palette: "Toggle desktop notifications").
        self.desktop_enabled = self.desktop_protocol is not None
        self.notify_command = (
            NotifyCommand(notify_command, on_failure=self._notify_command_failed) if notify_command else None
        )
        self._notify_failure_said = False
        #: What was sent to the terminal to call the human, latest last (tests read it; headless
        #: apps have no terminal, so this is the only trace there).
        self.attention_sent: deque[str] = deque(maxlen=20)
        #: How many times the human was called (one per burst of requests that still waited).
        self.attention_calls = 0
        self.status_file: StatusFile | None = None

    def _pool_folder(self) -> Path | None:
        membership = self.service.membership
        if membership is not None:
            return membership.folder.path
        return self.registry.path.parent if self.registry is not None else None

    def _start_attention(self) -> None:
        """On mount: the status file (when the pool's folder can be used: none while failing closed)."""
        folder = self._pool_folder()
        if folder is not None:
            self.status_file = StatusFile(folder, self.service, "human")
            self.status_file.start()

    async def _stop_attention(self) -> None:
        if self.status_file is not None:
            self.status_file.close()
        if self.notify_command is not None:
            await self.notify_command.stop()

    # ------------------------------------------------------------------ new requests

    def requests_arrived(self, requests: Sequence[PermissionRequest | QuestionRequest]) -> None:
        """New requests are in the inbox: call the human for those still waiting in a moment."""
        if requests:
            self.set_timer(ATTENTION_DELAY, partial(self._call_if_waiting, [r.id for r in requests]))

    def _call_if_waiting(self, ids: list[str]) -> None:
        if not self.is_running:
            return
        waiting = [
            request
            for rid in ids
            if (request := self.pool.permissions.get(rid) or self.pool.questions.get(rid)) is not None
            and not self._claimed(rid)
        ]
        if waiting:
            self.call_attention(waiting)

    def _claimed(self, request_id: str) -> bool:
        """Whether someone (a rule, the agent, this human) is answering it right now."""
        if self.registry is None:
            return False
        try:
            return self.registry.claim_of(request_id) is not None
        except Exception:  # a registry hiccup must not keep the human from being called
            log.warning("could not read the claim of %s", request_id, exc_info=True)
            return False

    def call_attention(self, requests: Sequence[PermissionRequest | QuestionRequest]) -> None:
        """Requests wait for the human: say so on screen, ring, notify the desktop, run the command."""
        self.attention_calls += 1
        for request in requests[:MAX_NOTICES]:
            what = permission_title(request) if isinstance(request, PermissionRequest) else "Question"
            # markup=False: a session title may contain "[...]".
            title = visible(self._title_of(request.sessionID))
            self.notify(f"{title}: {what}", title="Waiting for you", timeout=6, markup=False)
        if len(requests) > MAX_NOTICES:
            self.notify(f"and {len(requests) - MAX_NOTICES} more (see the inbox)", title="Waiting for you", timeout=6)
        if self.bell_enabled:
            self.bell()
        if self.desktop_enabled and self.desktop_protocol is not None:
            first = request_summary(requests[0], self._title_of(requests[0].sessionID))
            body = first if len(requests) == 1 else f"{len(requests)} requests; {first}"
            self._write_terminal(osc_notification(self.desktop_protocol, DESKTOP_TITLE, body, tmux=self._in_tmux))
        if self.notify_command is not None:
            folder = self._pool_folder()
            for request in requests:
                view = self.pool.sessions.get(request.sessionID)
                # The server the session lives on (its URL): the pool's own, or an attached one.
                client = self.service.link_of(request.sessionID).client
                self.notify_command.submit(
                    request_payload(
                        request,
                        session_title=(view.title if view else "") or request.sessionID,
                        directory=view.directory if view else None,
                        server=client.base_url if client is not None else None,
                        pool=folder.name if folder is not None else None,
                    )
                )

    def _title_of(self, session_id: str) -> str:
        """The session's title, raw (escaped where it is shown), or its id."""
        view = self.pool.sessions.get(session_id)
        return (view.title if view else "") or session_id

    def _write_terminal(self, data: str) -> None:
        """Through Textual's driver, as the bell is: the driver's writer queues it between whole
        frames, so it never lands inside one."""
        self.attention_sent.append(data)
        if not self.is_headless and self._driver is not None:
            self._driver.write(data)

    def _notify_command_failed(self, text: str) -> None:
        """Said on screen the first time only; every failure is in dashboard.log."""
        if self._notify_failure_said or not self.is_running:
            return
        self._notify_failure_said = True
        self.notify(
            f"{visible(text)}\nThe dashboard goes on; later failures are only logged (dashboard.log).",
            title="Notify command failed",
            severity="warning",
            timeout=10,
            markup=False,
        )

    # ------------------------------------------------------------------ the palette's toggle

    def action_toggle_desktop_notifications(self) -> None:
        if self.desktop_protocol is None:
            self.notify(
                "This terminal is not known to show desktop notifications. To send one anyway, start the "
                f"dashboard with {PROTOCOL_ENV}=osc9, osc777 or osc99 (whichever your terminal reads).",
                title="Desktop notifications",
                timeout=10,
                markup=False,
            )
            return
        self.desktop_enabled = not self.desktop_enabled
        self.notify(f"Desktop notifications {'on' if self.desktop_enabled else 'off'}")
