"""The pool's screens, opened from the dashboard: attached front ends, the decision log, the
approval policy, the rules (and the notice when a rule answers by itself).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.text import Text
from textual.app import App

from orchestrator_tui.pool.actions import ActionError
from orchestrator_tui.pool.policy import ApprovalPolicy, PolicyError, load_policy, policy_path
from orchestrator_tui.pool.registry import Rule
from orchestrator_tui.pool.rules import Applied
from orchestrator_tui.tui.render import (
    render_policy,
)
from orchestrator_tui.tui.safe import visible
from orchestrator_tui.tui.screens import (
    DecisionLogScreen,
    PolicyScreen,
    RulesScreen,
    WorkersScreen,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.screen import Screen

    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.registry import Registry
    from orchestrator_tui.pool.state import Pool


log = logging.getLogger(__name__)

#: How often the attached front ends are counted (one small SQLite read, off the refresh path).
MEMBERS_INTERVAL = 1.0


class PoolScreens(App[None]):
    """Mixed into :class:`~orchestrator_tui.tui.app.DashboardApp`: what the pool holds beyond sessions."""

    # The dashboard's state this part reads and writes (set up by DashboardApp.__init__/on_mount).
    pool: Pool
    actions_: PoolActions
    registry: Registry | None
    policy_path: Path | None
    pool_problem: str | None
    agents_attached: int
    _status_dirty: bool
    _schedule_flush: Callable[[], None]
    _session_title: Callable[[str], str]

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

    def open_page(self, name: str, build: Callable[[], Screen[None]]) -> None:
        """Show one of the dashboard's pages (help, log, policy, rules, workers), built once.

        Building a page (composing it, styling every widget, laying it out) was most of the time
        from the key to the page on screen: 60-75 ms of the 50 ms budget, measured through a
        pty. A page kept installed only repaints when it opens again, and reads its data afresh
        then (its ``on_screen_resume``). Its closures may hold the registry: the dashboard's
        registry is fixed for its life.
        """
        if not self.is_screen_installed(name):
            self.install_screen(build(), name)
        self.push_screen(name)

    def _registry_or_say_why(self) -> Registry | None:
        """The registry a pool screen reads; without one, the person is told why there is none."""
        if self.registry is None:
            why = f": {self.pool_problem}" if self.pool_problem else ""
            self.notify(f"This dashboard runs without the pool's registry{why}", severity="warning", markup=False)
        return self.registry

    def action_workers(self) -> None:
        if (registry := self._registry_or_say_why()) is None:
            return
        self.open_page(
            "workers",
            lambda: WorkersScreen(
                registry.members,
                self._describe_call,
                pool_name=registry.path.parent.name,
                own_pid=os.getpid(),
            ),
        )

    def action_decision_log(self) -> None:
        if (registry := self._registry_or_say_why()) is None:
            return
        self.open_page(
            "decision-log",
            lambda: DecisionLogScreen(lambda limit: registry.decisions(limit=limit), self._session_title),
        )

    def action_rules(self) -> None:
        if (registry := self._registry_or_say_why()) is None:
            return
        self.open_page("rules", lambda: RulesScreen(registry.rules, self._revoke_rule))

    def action_policy(self) -> None:
        self.open_page("policy", lambda: PolicyScreen(self._policy_view))

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


_SESSION_ID = re.compile(r"\bses_[A-Za-z0-9]+")
