"""The dashboard, driven with Textual's Pilot against the real OpenCode 1.18.33.

Each test builds one :class:`DashboardApp` on its own managed ``opencode serve`` (the scripted
model is the only stand-in), presses the keys a person would press, and checks what that
person sees or relies on: the rows of the session list, the detail pane, the inbox, the status
line, notifications, and what reached OpenCode and the shared registry.

Waiting is done by polling a condition with a generous deadline (:func:`until`); a fixed sleep
is never an assertion.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual import events
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Select, TextArea

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.opencode.process import kill_all_managed
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.tools import ClientInfo, Orchestrator
from orchestrator_tui.pool.actions import ActionError, PoolActions
from orchestrator_tui.pool.registry import Claim, Registry
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.pool.state import Status
from orchestrator_tui.safetext import UNSAFE_ANY
from orchestrator_tui.tui import widgets as widgets_module
from orchestrator_tui.tui.app import DashboardApp
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

pytestmark = pytest.mark.real_opencode

SIZE = (140, 40)
#: Deadline for anything that involves the model or OpenCode doing work.
SLOW = 60.0
ASK_BASH = {"permission": {"bash": "ask"}}

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# the rig: one managed server, one registry, one app per test
# ---------------------------------------------------------------------------------------------


@dataclass
class Rig:
    app: DashboardApp
    service: PoolService
    registry: Registry
    actions: PoolActions
    env: dict[str, str]
    #: Every notification the app posted (toasts expire; this list does not).
    notes: list[Notification] = field(default_factory=list)
    #: One entry per call of ``app.bell()``.
    bells: list[float] = field(default_factory=list)

    def hook(self, message: object) -> None:
        if isinstance(message, Notify):
            self.notes.append(message.notification)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Pilot[None]]:
        """Run the app headless at a fixed size, with toasts on, until it is connected."""
        real_bell = self.app.bell

        def counting_bell() -> None:
            self.bells.append(time.monotonic())
            real_bell()

        self.app.bell = counting_bell  # type: ignore[method-assign]
        async with self.app.run_test(size=SIZE, notifications=True, message_hook=self.hook) as pilot:
            await asyncio.wait_for(self.app.ready.wait(), SLOW)
            await pilot.pause()
            yield pilot

    def pool_ids(self) -> list[str]:
        return list(self.app.pool.sessions)

    def problems(self) -> list[str]:
        """Warnings and errors the user was shown."""
        return [f"{n.severity}: {n.title}: {n.message}" for n in self.notes if n.severity in ("warning", "error")]


@pytest.fixture
async def make_rig(
    project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]
) -> AsyncIterator[Callable[..., Rig]]:
    services: list[PoolService] = []
    registries: list[Registry] = []

    def make(*, spec: ServerSpec | None = None, bell: bool = True, **overrides: Any) -> Rig:
        if spec is None:
            spec = ServerSpec(cwd=project_dir, config_content=model_config(**overrides), env=opencode_env)
        service = PoolService(spec)
        services.append(service)
        registry = Registry(Path(opencode_env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default" / "registry.sqlite3")
        registries.append(registry)
        actions = PoolActions(service, registry)
        app = DashboardApp(service, actions, registry, bell=bell)
        return Rig(app=app, service=service, registry=registry, actions=actions, env=dict(spec.env or opencode_env))

    yield make
    failures: list[BaseException] = []
    for service in services:  # each one, even when an earlier close failed
        try:
            await asyncio.wait_for(service.close(), 20)
        except Exception as exc:
            failures.append(exc)
    for registry in registries:
        registry.close()
    if failures:
        kill_all_managed()  # last resort: nothing this test started outlives it
        raise failures[0]


# ---------------------------------------------------------------------------------------------
# helpers: waiting, and reading the screen as the user sees it
# ---------------------------------------------------------------------------------------------


async def until(pilot: Pilot[None], predicate: Callable[[], T], what: str, timeout: float = SLOW) -> T:
    """Poll ``predicate`` (letting the app process its messages) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        await pilot.pause()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def screen_text(app: DashboardApp) -> str:
    """The whole terminal as plain text (the top screen, dialogs and toasts included)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def list_lines(app: DashboardApp) -> list[str]:
    """The session list's visible lines (header first)."""
    session_list = app.session_list
    return [session_list.render_line(y).text for y in range(session_list.size.height)]


def row_line(app: DashboardApp, sid: str) -> str:
    """The line a session occupies in the list (it must be visible)."""
    session_list = app.session_list
    index = session_list.shown.index(sid) - session_list.scroll_offset.y
    return session_list.render_line(index + 1).text


def output_text(app: DashboardApp) -> str:
    return app.detail.query_one("#detail-output", TextArea).text


def widget_text(widget: Widget) -> str:
    """What a widget shows on the terminal right now (its region of its screen, as text)."""
    region = widget.region
    strips = widget.screen._compositor.render_strips()
    return "\n".join(strip.text[region.x : region.right] for strip in strips[region.y : region.bottom])


async def on_screen(pilot: Pilot[None], *texts: str, widget: Widget | None = None, timeout: float = 5.0) -> str:
    """Wait until every text is on the terminal (or in ``widget``'s part of it); return what is shown.

    The screen is repainted on the app's next refresh after a change, so even a change the test
    already observed in the app's state is waited for, briefly, before it is looked for on screen.
    Runs of spaces count as one (table columns are padded to their widest cell).
    """

    def grab() -> str:
        return widget_text(widget) if widget is not None else screen_text(pilot.app)  # type: ignore[arg-type]

    def missing(text: str) -> list[str]:
        flat = " ".join(text.split())
        return [t for t in texts if " ".join(t.split()) not in flat]

    def complete() -> str | None:
        text = grab()
        return None if missing(text) else text

    try:
        return await until(pilot, complete, f"{texts} on screen", timeout)
    except AssertionError:
        text = grab()
        raise AssertionError(f"{missing(text)} not on screen:\n{text}") from None


def squash(text: str) -> str:
    return "".join(text.split())


def info_text(app: DashboardApp) -> str:
    return widget_text(app.detail.query_one("#detail-info"))


def detail_field(app: DashboardApp, label: str) -> str | None:
    """The value shown beside ``label`` in the detail pane's facts (None if not shown)."""
    for line in info_text(app).splitlines():
        if line.strip().startswith(label + " "):
            return line.strip()[len(label) :].strip()
    return None


def status_text(app: DashboardApp) -> str:
    return widget_text(app.status_line)


def inbox_ids(app: DashboardApp) -> list[str]:
    return list(app.inbox.requests)


def pending_permission(app: DashboardApp, sid: str) -> PermissionRequest | None:
    return next((p for p in app.pool.permissions.values() if p.sessionID == sid), None)


def pending_question(app: DashboardApp, sid: str) -> QuestionRequest | None:
    return next((q for q in app.pool.questions.values() if q.sessionID == sid), None)


async def looked_at(pilot: Pilot[None], app: DashboardApp, request_id: str | None = None) -> None:
    """Look at the highlighted request for as long as a key needs before it may answer it.

    A key answers only a request that has been drawn under the cursor for SETTLE_SECONDS (the
    dashboard refuses earlier presses): a person reads what they approve, and so do these tests.
    """
    rid = request_id or app.inbox.highlighted_id
    assert rid is not None, "nothing is highlighted"
    await until(pilot, lambda: app.inbox.shown_since(rid) is not None, "the request drawn under the cursor")
    since = app.inbox.shown_since(rid)
    assert since is not None
    await until(
        pilot, lambda: time.monotonic() - since > widgets_module.SETTLE_SECONDS + 0.05, "the request looked at"
    )


@pytest.fixture
def long_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The half second a request must be on screen, stretched to 3 s, for the tests of presses
    made *too soon*: Pilot waits for each key to be handled before the next, which on a loaded
    machine can take longer than half a second and make a "too soon" press legitimately late."""
    monkeypatch.setattr(widgets_module, "SETTLE_SECONDS", 3.0)


def is_idle(app: DashboardApp, sid: str) -> bool:
    view = app.pool.sessions.get(sid)
    return view is not None and view.status is Status.IDLE and not app.pool.needs_input(sid)


async def type_text(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


async def paste(pilot: Pilot[None], text: str) -> None:
    """Paste into the focused widget (what a terminal sends for a paste; typing is ~60 ms a key)."""
    focused = pilot.app.focused
    assert focused is not None
    focused.post_message(events.Paste(text))
    await pilot.pause()


async def start_from_dashboard(rig: Rig, pilot: Pilot[None], prompt: str, pasted: str = "") -> str:
    """Press n, type the prompt (then paste ``pasted``), Enter; return the new session's id."""
    before = set(rig.pool_ids())
    await pilot.press("n")
    await until(pilot, lambda: isinstance(rig.app.screen, TextPromptScreen), "the new-session dialog")
    await type_text(pilot, prompt)
    if pasted:
        await paste(pilot, pasted)
    await pilot.press("enter")
    new = await until(pilot, lambda: set(rig.pool_ids()) - before, "the new session in the pool")
    (sid,) = new
    await until(pilot, lambda: rig.app.session_list.selected_id == sid, "the new session to be selected")
    return sid


async def start_quietly(rig: Rig, prompt: str, *, title: str | None = None) -> str:
    """Start a session the way the dashboard does, without the dialog (set-up, not under test)."""
    return (await rig.actions.new_session(prompt, title=title)).id


# ---------------------------------------------------------------------------------------------
# 1. a session started from the dashboard streams into the detail pane
# ---------------------------------------------------------------------------------------------

STREAMED = " ".join(f"word{i:02d}" for i in range(60))


async def test_new_session_streams_into_detail_pane(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_from_dashboard(rig, pilot, "STREAM ", pasted=STREAMED)

        # Sample the Output pane while the session works: it must fill in word by word.
        samples: list[tuple[Status, str]] = []

        def sample() -> bool:
            view = app.pool.sessions[sid]
            samples.append((view.status, output_text(app)))
            return view.status is Status.IDLE and output_text(app) == STREAMED

        await until(pilot, sample, "the streamed reply to finish in the Output pane")
        partial = [text for status, text in samples if status is Status.BUSY and 0 < len(text) < len(STREAMED)]
        assert len(set(partial)) >= 3, f"the Output pane did not grow while busy: {samples[:5]}…"
        assert all(STREAMED.startswith(text) for text in partial), "streamed text must only ever grow"
        assert output_text(app) == STREAMED
        # …and the reader sees it: the pane follows the stream, so its end is on screen.
        await on_screen(pilot, "word59", widget=app.detail.query_one("#detail-output"))

        # Who started it: the list row and the detail pane both say "human".
        assert app.session_list.rows[sid].origin == "human"
        assert "human" in row_line(app, sid).split()
        await until(pilot, lambda: detail_field(app, "From") == "human", "'From human' in the detail pane")
        launch = rig.registry.launches([sid])[sid]
        assert (launch.origin, launch.launcher_id) == ("human", "dashboard")
        await until(pilot, lambda: row_line(app, sid).startswith("○"), "the row's idle glyph")
        assert rig.problems() == []


AGENTS = {
    "agent": {
        "reviewer": {"description": "Reviews code.\nSecond line.", "mode": "primary", "prompt": "You review."},
        "secret": {"description": "An internal helper.", "mode": "subagent", "hidden": True},
    }
}


async def choose_agent(pilot: Pilot[None], app: DashboardApp, prefix: str) -> None:
    """In an open prompt dialog: Tab to the agent choice, open it, type the name's start, Enter."""
    dialog = app.screen
    assert isinstance(dialog, TextPromptScreen)
    select = dialog.query_one("#agent", Select)
    await until(pilot, lambda: select.prompt == "default agent", "the agents to load")
    await pilot.press("tab")
    assert app.focused is select
    await pilot.press("enter", *prefix, "enter")
    await until(pilot, lambda: isinstance(app.focused, Input), "the focus back on the text")


async def user_agents(rig: Rig, sid: str) -> list[str | None]:
    client = (await rig.service.acquire()).client
    return [(m.info.model_extra or {}).get("agent") for m in await client.messages(sid) if m.info.role == "user"]


async def test_prompts_go_to_the_agent_chosen_in_the_dialog(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**AGENTS)
    app = rig.app
    async with rig.running() as pilot:
        # The choice offers the visible agents only (OpenCode's own title/summary/compaction and a
        # config's hidden ones are internal).
        assert [a.name for a in await rig.actions.agents()] == ["build", "explore", "general", "plan", "reviewer"]
        before = set(rig.pool_ids())
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the new-session dialog")
        await paste(pilot, "Say exactly 'reviewed'.")
        await choose_agent(pilot, app, "rev")
        await pilot.press("enter")
        (sid,) = await until(pilot, lambda: set(rig.pool_ids()) - before, "the new session in the pool")
        await until(pilot, lambda: app.session_list.selected_id == sid, "the new session selected")
        await until(pilot, lambda: is_idle(app, sid) and output_text(app) == "reviewed", "the first turn")
        assert await user_agents(rig, sid) == ["reviewer"]
        await until(pilot, lambda: detail_field(app, "Agent") == "reviewer", "'Agent reviewer' in the detail pane")

        # p: the prompt dialog offers the same choice; Enter without one keeps OpenCode's default.
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the prompt dialog")
        await paste(pilot, "Say exactly 'planned'.")
        await choose_agent(pilot, app, "pla")
        await pilot.press("enter")
        await until(pilot, lambda: any(n.message == "Prompt sent to plan" for n in rig.notes), "the note")
        await until(pilot, lambda: is_idle(app, sid) and output_text(app) == "planned", "the second turn")
        await until(pilot, lambda: detail_field(app, "Agent") == "plan", "'Agent plan' in the detail pane")
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the prompt dialog")
        await paste(pilot, "Say exactly 'built'.")
        await pilot.press("enter")
        await until(pilot, lambda: is_idle(app, sid) and output_text(app) == "built", "the third turn")
        assert await user_agents(rig, sid) == ["reviewer", "plan", "build"]
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 2. a permission in the inbox; `o` allows it once
# ---------------------------------------------------------------------------------------------


async def test_allow_once_lets_the_session_complete(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_from_dashboard(rig, pilot, "BASH echo allowed-once-ok")
        request = await until(pilot, lambda: pending_permission(app, sid), "the bash permission")
        await until(pilot, lambda: inbox_ids(app) == [request.id], "the permission in the inbox")
        assert app.inbox.highlighted_id == request.id
        # The inbox title counts it; the command being asked for is shown.
        await on_screen(pilot, "Waiting for you (1)", "Run command: echo allowed-once-ok", widget=app.inbox)
        assert "◆" in row_line(app, sid), "the session row shows it needs input"

        await looked_at(pilot, app, request.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, sid), "the session to finish after allow once")
        await until(pilot, lambda: "allowed-once-ok" in output_text(app), "the command output in the Output pane")
        assert output_text(app) == "Command output:\nallowed-once-ok"
        assert inbox_ids(app) == []
        await on_screen(pilot, "Nothing is waiting", widget=app.inbox)
        call = list(app.pool.sessions[sid].tool_calls.values())[-1]
        assert (call.tool, call.status) == ("bash", "completed")
        await on_screen(pilot, "completed bash echo allowed-once-ok", widget=app.detail.query_one("#detail-tools"))

        decisions = rig.registry.decisions(request_id=request.id)
        assert len(decisions) == 1
        decision = decisions[0]
        assert (decision.decided_by, decision.channel, decision.decision) == ("human", "dashboard", "once")
        assert decision.kind == "permission" and decision.session_id == sid
        assert any("Allowed once" in n.message for n in rig.notes)
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 3. `r` rejects, with or without a message
# ---------------------------------------------------------------------------------------------


async def test_reject_with_and_without_message(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        # With a message: OpenCode hands it to the agent, which carries on with the feedback.
        sid = await start_from_dashboard(rig, pilot, "BASH echo should-not-run")
        request = await until(pilot, lambda: pending_permission(app, sid), "the bash permission")
        await until(pilot, lambda: app.inbox.highlighted_id == request.id, "the permission highlighted")
        await looked_at(pilot, app, request.id)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the reject dialog")
        await type_text(pilot, "not now")
        await pilot.press("enter")
        await until(pilot, lambda: is_idle(app, sid), "the session to settle after the rejection")
        assert request.id not in app.pool.permissions and inbox_ids(app) == []
        call = list(app.pool.sessions[sid].tool_calls.values())[-1]
        assert (call.tool, call.status) == ("bash", "error")
        assert call.error and "rejected permission" in call.error and "not now" in call.error, call.error
        await on_screen(pilot, "error bash echo should-not-run", widget=app.detail.query_one("#detail-tools"))
        # The agent was told and answered (the scripted model acknowledges the tool error).
        await until(pilot, lambda: "not now" in output_text(app), "the agent's reply to the feedback")
        assert output_text(app).startswith("Understood: The user rejected permission"), output_text(app)
        assert "Command output" not in output_text(app), "the command must not have run"
        (decision,) = rig.registry.decisions(request_id=request.id)
        assert (decision.decided_by, decision.channel, decision.decision) == ("human", "dashboard", "reject")
        assert decision.detail and decision.detail.get("message") == "not now"

        # Without a message (Enter on the empty dialog): the turn just stops.
        sid2 = await start_from_dashboard(rig, pilot, "BASH echo also-not")
        request2 = await until(pilot, lambda: pending_permission(app, sid2), "the second bash permission")
        await until(pilot, lambda: app.inbox.highlighted_id == request2.id, "the second permission highlighted")
        await looked_at(pilot, app, request2.id)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the reject dialog")
        await pilot.press("enter")
        await until(pilot, lambda: is_idle(app, sid2), "the second session to stop")
        call2 = list(app.pool.sessions[sid2].tool_calls.values())[-1]
        assert call2.status == "error"
        assert call2.error == "The user rejected permission to use this specific tool call."
        (decision2,) = rig.registry.decisions(request_id=request2.id)
        assert decision2.decision == "reject" and "message" not in (decision2.detail or {})
        assert inbox_ids(app) == []
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 4. `a` + confirm allows always; OpenCode keeps the grant
# ---------------------------------------------------------------------------------------------


async def test_allow_always_after_confirmation(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_from_dashboard(rig, pilot, "BASH echo always-ok")
        request = await until(pilot, lambda: pending_permission(app, sid), "the bash permission")
        await until(pilot, lambda: app.inbox.highlighted_id == request.id, "the permission highlighted")

        # Cancelling the confirmation leaves the request waiting.
        await looked_at(pilot, app, request.id)
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the allow-always confirmation")
        # It lists exactly what "always" will allow.
        assert request.always, "OpenCode sends the patterns an always-grant covers"
        await on_screen(pilot, "Allow always?", *(f"• {p}" for p in request.always))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the dialog to close")
        assert request.id in app.pool.permissions and rig.registry.decisions(request_id=request.id) == []

        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the allow-always confirmation")
        await pilot.press("y")
        await until(pilot, lambda: is_idle(app, sid), "the session to finish")
        assert output_text(app) == "Command output:\nalways-ok"
        (decision,) = rig.registry.decisions(request_id=request.id)
        assert (decision.decided_by, decision.channel, decision.decision) == ("human", "dashboard", "always")
        assert decision.detail and decision.detail.get("always") == request.always

        # A second identical command in another session is not asked again.
        sid2 = await start_from_dashboard(rig, pilot, "BASH echo always-ok")
        await until(pilot, lambda: is_idle(app, sid2) and "always-ok" in output_text(app), "the second session")
        assert output_text(app) == "Command output:\nalways-ok"
        assert app.pool.permissions == {} and len(rig.registry.decisions()) == 1
        assert sum("Waiting for you" in (n.title or "") for n in rig.notes) == 1
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 5. questions answered with number keys
# ---------------------------------------------------------------------------------------------


async def test_answer_questions_with_number_keys(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_from_dashboard(rig, pilot, "ASK")
        question = await until(pilot, lambda: pending_question(app, sid), "the question")
        await until(pilot, lambda: app.inbox.highlighted_id == question.id, "the question highlighted")
        await on_screen(pilot, "Question: Pick a colour", widget=app.inbox)

        await looked_at(pilot, app, question.id)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QuestionScreen), "the question dialog")
        await on_screen(pilot, "Pick a colour", "1 ( ) red", "2 ( ) blue")
        await pilot.press("2")
        await on_screen(pilot, "2 (•) blue", "1 ( ) red")
        await pilot.press("enter")
        await on_screen(pilot, "Press Enter again")  # the first Enter asks for confirmation
        assert question.id in app.pool.questions
        await pilot.press("enter")
        await until(pilot, lambda: is_idle(app, sid), "the session to finish after the answer")
        await until(pilot, lambda: '"Pick a colour"="blue"' in output_text(app), "the answer in the Output")
        (decision,) = rig.registry.decisions(request_id=question.id)
        assert (decision.kind, decision.decision, decision.decided_by) == ("question", "reply", "human")
        assert decision.detail == {"answers": [["blue"]]}

        # Two questions, opened from the inbox itself (Tab to it, Enter): a single-choice pick
        # moves to the next tab; toggle two options there; submit.
        sid2 = await start_from_dashboard(rig, pilot, "ASKMULTI")
        multi = await until(pilot, lambda: pending_question(app, sid2), "the two questions")
        await until(pilot, lambda: app.inbox.highlighted_id == multi.id, "the questions highlighted")
        inbox_list = app.inbox.query_one("#inbox-list")
        for _ in range(4):
            if app.focused is inbox_list:
                break
            await pilot.press("tab")
        assert app.focused is inbox_list, "Tab reaches the inbox"
        await looked_at(pilot, app, multi.id)
        await pilot.press("enter")
        dialog = await until(
            pilot, lambda: app.screen if isinstance(app.screen, QuestionScreen) else None, "the question dialog"
        )
        await on_screen(pilot, "2 questions", "Pick a colour")
        await pilot.press("1")
        await until(pilot, lambda: dialog.current == 1, "the dialog to move to the second question")
        await on_screen(pilot, "Pick toppings", "1 [ ] cheese", "several answers allowed")
        await pilot.press("1", "2")
        await on_screen(pilot, "1 [x] cheese", "2 [x] ham")
        await pilot.press("enter", "enter")
        await until(pilot, lambda: is_idle(app, sid2), "the session to finish after the answers")
        expected = '"Pick a colour"="red", "Pick toppings"="cheese, ham"'
        await until(pilot, lambda: expected in output_text(app), "both answers in the Output")
        (decision2,) = rig.registry.decisions(request_id=multi.id)
        assert decision2.detail == {"answers": [["red"], ["cheese", "ham"]]}

        # Ctrl+R in the dialog rejects the question: OpenCode stops the turn.
        app.session_list.focus()
        sid3 = await start_from_dashboard(rig, pilot, "ASK")
        rejected = await until(pilot, lambda: pending_question(app, sid3), "the third question")
        await until(pilot, lambda: app.inbox.highlighted_id == rejected.id, "the question highlighted")
        await looked_at(pilot, app, rejected.id)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QuestionScreen), "the question dialog")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: is_idle(app, sid3), "the session to stop after the rejection")
        call = list(app.pool.sessions[sid3].tool_calls.values())[-1]
        assert (call.tool, call.status, call.error) == ("question", "error", "The user dismissed this question")
        (decision3,) = rig.registry.decisions(request_id=rejected.id)
        assert (decision3.kind, decision3.decision) == ("question", "reject")
        assert any(n.message == "Question rejected" for n in rig.notes)
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 6. a session started by an agent through the MCP tools is flagged "agent"
# ---------------------------------------------------------------------------------------------


async def test_agent_session_is_flagged_agent(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    app = rig.app
    orch = Orchestrator(rig.service, registry=rig.registry, origin="agent", env=rig.env)
    orch.client_info = ClientInfo(name="test-agent", version="1.0")
    async with rig.running() as pilot:
        human = await start_from_dashboard(rig, pilot, "Say exactly 'from-human'")
        result = await asyncio.wait_for(orch.run(t.RunInput(message="Say exactly 'from-agent'")), SLOW)
        assert result.output.response == "from-agent"
        agent = result.output.session_id
        await until(pilot, lambda: app.session_list.rows.get(agent), "the agent's session in the list")
        await until(pilot, lambda: app.session_list.rows[agent].origin == "agent", "the agent flag")
        # Attribution names the agent's MCP client (from its `initialize`), in the list and the detail.
        assert app.session_list.rows[agent].origin_label == "agent · test-agent"
        assert "agent·test-agent" in squash(row_line(app, agent))  # "agent · " squeezed when the column is tight
        assert "human" in row_line(app, human).split()
        launch = rig.registry.launches([agent])[agent]
        assert (launch.origin, launch.client_name) == ("agent", "test-agent")

        # Selecting it shows the agent's session and its reply in the detail pane.
        app.session_list.select(agent)
        await until(pilot, lambda: output_text(app) == "from-agent", "the agent session's reply")
        await until(pilot, lambda: detail_field(app, "Session") == app.pool.sessions[agent].title, "its detail")
        assert detail_field(app, "From") == "agent · test-agent 1.0"
        # The filter finds an agent's sessions by its client's name.
        await pilot.press("slash")
        await type_text(pilot, "test-agent")
        await until(pilot, lambda: app.session_list.shown == [agent], "the filter on the client name")
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 7. a request answered elsewhere disappears at once
# ---------------------------------------------------------------------------------------------


async def test_request_answered_elsewhere_disappears(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    orch = Orchestrator(rig.service, registry=rig.registry, origin="agent", env=rig.env)
    orch.client_info = ClientInfo(name="test-agent")
    async with rig.running() as pilot:
        # Answered by an agent through the tools (same pool).
        sid = await start_quietly(rig, "BASH echo by-agent")
        request = await until(pilot, lambda: pending_permission(app, sid), "the first permission")
        await until(pilot, lambda: request.id in inbox_ids(app), "the first permission in the inbox")
        task = asyncio.ensure_future(
            orch.respond_permission(t.RespondPermissionInput(session_id=sid, reply=t.PermissionReply.ONCE))
        )
        try:
            await until(pilot, lambda: request.id not in inbox_ids(app), "the inbox to drop it", timeout=10.0)
            result = await asyncio.wait_for(task, SLOW)
        finally:
            task.cancel()
        assert result.output.response == "Command output:\nby-agent"
        (decision,) = rig.registry.decisions(request_id=request.id)
        assert (decision.decided_by, decision.channel, decision.client_name) == ("agent", "mcp", "test-agent")

        # Answered by another front end (straight to OpenCode): only the event stream tells us.
        sid2 = await start_quietly(rig, "BASH echo by-someone-else")
        request2 = await until(pilot, lambda: pending_permission(app, sid2), "the second permission")
        await until(pilot, lambda: request2.id in inbox_ids(app), "the second permission in the inbox")
        client = (await rig.service.acquire()).client
        await client.reply_permission(request2.id, "once", None)
        await until(pilot, lambda: request2.id not in inbox_ids(app), "the inbox to drop it", timeout=10.0)
        await on_screen(pilot, "Nothing is waiting", widget=app.inbox)
        await on_screen(pilot, "nothing waiting", widget=app.status_line)

        # A late answer from the dashboard to the same request says so instead of failing.
        with pytest.raises(ActionError, match="already answered elsewhere"):
            await rig.actions.reply_permission(request2.id, "once")
        await pilot.press("o")
        await until(pilot, lambda: any("Nothing is waiting" in n.message for n in rig.notes), "the hint")
        await until(pilot, lambda: is_idle(app, sid2), "the second session to finish")
        assert rig.registry.decisions(request_id=request2.id) == []
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 8. filtering with `/`, and `i` to the session that needs input
# ---------------------------------------------------------------------------------------------


async def test_filter_and_jump_to_waiting(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        ids = {
            "alpha": await start_quietly(rig, "Say exactly 'a'", title="alpha report"),
            "beta": await start_quietly(rig, "Say exactly 'b'", title="beta cleanup"),
            "waiting": await start_quietly(rig, "BASH echo waiting", title="gamma needs you"),
        }
        await until(pilot, lambda: set(app.session_list.shown) == set(ids.values()), "all three rows")
        await until(pilot, lambda: pending_permission(app, ids["waiting"]), "the permission")
        await until(pilot, lambda: is_idle(app, ids["alpha"]) and is_idle(app, ids["beta"]), "the others to finish")
        await on_screen(pilot, "Sessions (3)")

        await pilot.press("slash")
        assert app.filter_input.display and app.focused is app.filter_input
        await type_text(pilot, "beta")
        await until(pilot, lambda: app.session_list.shown == [ids["beta"]], "the filter to narrow the list")
        rows = [line for line in list_lines(app)[1:] if line.strip()]
        assert len(rows) == 1 and "beta cleanup" in rows[0]
        await on_screen(pilot, "Sessions (1/3)")
        assert app.session_list.selected_id == ids["beta"]

        # Fuzzy: the letters in order are enough.
        await pilot.press("ctrl+u")
        await type_text(pilot, "gmy")
        await until(pilot, lambda: app.session_list.shown == [ids["waiting"]], "the fuzzy match")
        # A piece of a session id finds that session.
        await pilot.press("ctrl+u")
        await type_text(pilot, ids["alpha"][-8:])
        await until(pilot, lambda: app.session_list.shown == [ids["alpha"]], "the id match")
        await pilot.press("ctrl+u")
        await type_text(pilot, "gmy")
        await until(pilot, lambda: app.session_list.shown == [ids["waiting"]], "the fuzzy match again")

        await pilot.press("enter")
        assert app.focused is app.session_list, "Enter hands focus back to the list"
        assert app.filter_input.display, "the filter stays visible while it narrows the list"

        # Clearing the filter shows everything and hides the field.
        await pilot.press("slash", "ctrl+u", "enter")
        await until(pilot, lambda: len(app.session_list.shown) == 3, "all rows back")
        assert not app.filter_input.display and app.focused is app.session_list

        # `i` jumps to the one session waiting for input, wherever the cursor was.
        app.session_list.select(ids["alpha"])
        await pilot.pause()
        await pilot.press("i")
        await until(pilot, lambda: app.session_list.selected_id == ids["waiting"], "the jump to the waiting session")
        await until(pilot, lambda: detail_field(app, "Session") == "gamma needs you", "its detail")
        assert app.inbox.highlighted_id == pending_permission(app, ids["waiting"]).id  # type: ignore[union-attr]

        # Answer it (once it has been looked at); then `i` says there is nothing left.
        await looked_at(pilot, app)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, ids["waiting"]), "the session to finish")
        await pilot.press("i")
        await until(pilot, lambda: any("No session is waiting" in n.message for n in rig.notes), "the hint")
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 9. errors: a message and a fix, never a traceback
# ---------------------------------------------------------------------------------------------


async def assert_unavailable(rig: Rig, *fragments: str) -> None:
    """The app shows the error and its fix, keeps running, and answers `?`."""
    app = rig.app
    async with app.run_test(size=SIZE, notifications=True, message_hook=rig.hook) as pilot:
        await until(pilot, lambda: "OpenCode is not available" in info_text(app), "the error in the detail pane")
        info = info_text(app)
        for fragment in fragments:
            # The pane wraps long lines (paths mid-word): compare without whitespace.
            assert squash(fragment) in squash(info), f"{fragment!r} not in the detail pane:\n{info}"
        assert "Fix:" in info
        await on_screen(pilot, "✗ OpenCode unavailable", "retrying in", widget=app.status_line)
        assert "Traceback" not in screen_text(app)
        assert not app.ready.is_set()
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "the help screen to close")
        # An action that needs the server says why it failed, and the app carries on.
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, TextPromptScreen), "the new-session dialog")
        await type_text(pilot, "hello")
        await pilot.press("enter")
        note = await until(
            pilot, lambda: next((n for n in rig.notes if n.title == "Could not start"), None), "the failure"
        )
        assert note.severity == "error" and note.message.startswith("OpenCode server unavailable: "), note
        assert app.is_running and "Traceback" not in screen_text(app)
    assert app.return_code in (0, None)


async def test_dead_attach_url_shows_fix(make_rig: Callable[..., Rig], project_dir: Path) -> None:
    rig = make_rig(spec=ServerSpec(cwd=project_dir, attach_url="http://127.0.0.1:9"))
    await assert_unavailable(
        rig,
        "External OpenCode server unavailable (base_url=http://127.0.0.1:9)",
        "Fix: check the --attach URL, and that the server is running (opencode serve).",
    )


async def test_missing_binary_shows_error(
    make_rig: Callable[..., Rig], project_dir: Path, opencode_env: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-opencode"
    env = {**opencode_env, "OPENCODE_BINARY": str(missing)}
    rig = make_rig(spec=ServerSpec(cwd=project_dir, env=env))
    await assert_unavailable(
        rig,
        f"OPENCODE_BINARY points to missing path: {missing}",
        "Fix: point OPENCODE_BINARY at an existing opencode 1.18.33 binary, or unset it",
    )


async def test_wrong_password_shows_password_fix(
    make_rig: Callable[..., Rig], project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]
) -> None:
    # A real server with a password (a managed one), then a dashboard attached with the wrong one.
    owner = PoolService(ServerSpec(cwd=project_dir, config_content=model_config(), env=opencode_env))
    try:
        snapshot = await asyncio.wait_for(owner.acquire(), SLOW)
        spec = ServerSpec(cwd=project_dir, attach_url=snapshot.base_url, password="not-the-password")
        rig = make_rig(spec=spec)
        await assert_unavailable(
            rig,
            "401",
            "wrong or missing password",
            "Fix: set OPENCODE_SERVER_PASSWORD to the attached server's password.",
        )
    finally:
        await asyncio.wait_for(owner.close(), 20)


# ---------------------------------------------------------------------------------------------
# 10. notifications: bell, toast, status-line count
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bell", [True, False], ids=["bell", "no-bell"])
async def test_waiting_request_rings_and_is_counted(make_rig: Callable[..., Rig], bell: bool) -> None:
    rig = make_rig(bell=bell, **ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        await on_screen(pilot, "nothing waiting", widget=app.status_line)
        sid = await start_quietly(rig, "BASH echo ring", title="needs a yes")
        await until(pilot, lambda: "◆ 1 waiting" in status_text(app), "the status line to count the request")
        # The human is called once the request still waits a moment later (tests/test_attention.py).
        waiting = await until(pilot, lambda: [n for n in rig.notes if n.title == "Waiting for you"], "the notice")
        assert len(waiting) == 1 and waiting[0].message == "needs a yes: Run command"
        await on_screen(pilot, "Waiting for you", "needs a yes: Run command")  # the toast
        assert len(rig.bells) == (1 if bell else 0)

        # A second request rings again and counts two.
        sid2 = await start_quietly(rig, "BASH echo ring-two", title="needs another yes")
        await until(pilot, lambda: "◆ 2 waiting" in status_text(app), "the status line to count two")
        await until(pilot, lambda: len([n for n in rig.notes if n.title == "Waiting for you"]) == 2, "the notice")
        assert len(rig.bells) == (2 if bell else 0)

        # Answering does not ring; the count goes down.
        app.session_list.select(sid)
        await until(pilot, lambda: app.inbox.highlighted_id == pending_permission(app, sid).id, "highlight")  # type: ignore[union-attr]
        await looked_at(pilot, app)
        await pilot.press("o")
        await until(pilot, lambda: "◆ 1 waiting" in status_text(app), "the count to drop")
        app.session_list.select(sid2)
        await until(pilot, lambda: app.inbox.highlighted_id == pending_permission(app, sid2).id, "highlight")  # type: ignore[union-attr]
        await looked_at(pilot, app)
        await pilot.press("o")
        await until(pilot, lambda: "nothing waiting" in status_text(app), "nothing waiting")
        assert len(rig.bells) == (2 if bell else 0)
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 11. batch approvals: `space` / `*` mark, `o` answers every marked request; the decision log
# ---------------------------------------------------------------------------------------------


def marked(app: DashboardApp) -> set[str]:
    return set(app.inbox.marked)


async def test_batch_allow_once_of_marked_requests(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        first = await start_quietly(rig, "BASH echo batch-same", title="batch one")
        second = await start_quietly(rig, "BASH echo batch-same", title="batch two")
        other = await start_quietly(rig, "BASH echo batch-other", title="not like the others")
        requests = {
            sid: await until(pilot, lambda sid=sid: pending_permission(app, sid), f"the permission of {sid}")
            for sid in (first, second, other)
        }
        await until(pilot, lambda: len(inbox_ids(app)) == 3, "three requests in the inbox")
        app.inbox.select(requests[first].id)
        await looked_at(pilot, app, requests[first].id)

        # `*` marks every request asking for exactly the same: the two "batch-same" ones.
        await pilot.press("asterisk")
        alike = {requests[first].id, requests[second].id}
        await until(pilot, lambda: marked(app) == alike, "the two alike requests marked")
        await on_screen(pilot, "Waiting for you (3) · 2 marked", "2 marked:", widget=app.inbox)
        assert widget_text(app.inbox).count("✔") == 2, "each marked row shows its mark"
        # `space` toggles the highlighted one.
        await pilot.press("space")
        await until(pilot, lambda: marked(app) == {requests[second].id}, "the highlighted one unmarked")
        await on_screen(pilot, "1 marked", widget=app.inbox)
        await pilot.press("space")
        await until(pilot, lambda: marked(app) == alike, "marked again")

        # `o` answers both marked requests (not the highlighted one alone, not the third).
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, first) and is_idle(app, second), "both marked sessions to finish")
        await until(pilot, lambda: inbox_ids(app) == [requests[other].id], "only the unmarked request left")
        assert marked(app) == set(), "marks go with their requests"
        await on_screen(pilot, "Waiting for you (1)", widget=app.inbox)
        assert "marked" not in widget_text(app.inbox)
        note = await until(
            pilot, lambda: next((n for n in rig.notes if n.message == "Allowed once: 2 requests"), None), "the summary"
        )
        assert note.severity == "information"
        for sid in (first, second):
            (decision,) = rig.registry.decisions(request_id=requests[sid].id)
            assert (decision.decision, decision.decided_by, decision.channel) == ("once", "human", "dashboard")
        assert requests[other].id in app.pool.permissions

        # The decision log lists the two answers so far. (It is built once and kept: opened again
        # below, it must read the decisions afresh.)
        app.clear_notifications()
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, DecisionLogScreen), "the decision log")
        await on_screen(pilot, "Decision log", "2 decisions", "batch one", "batch two")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DecisionLogScreen), "the log to close")

        # With nothing marked, `o` is back to the highlighted request alone.
        app.inbox.select(requests[other].id)
        await looked_at(pilot, app, requests[other].id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, other), "the third session to finish")

        # Opened again, the decision log lists the three answers, newest first, with who and how.
        app.clear_notifications()  # toasts would cover the table's right-hand columns
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, DecisionLogScreen), "the decision log")
        text = await on_screen(pilot, "Decision log", "3 decisions", "not like the others", "batch one", "batch two")
        rows = [line for line in text.splitlines() if "allow once" in line]
        assert len(rows) == 3 and all("human" in row and "dashboard" in row for row in rows), rows
        assert "not like the others" in rows[0], "newest first"
        assert "bash · echo batch-same" in squash_spaces(text)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DecisionLogScreen), "the log to close")
        assert rig.problems() == []


async def test_a_page_opened_again_shows_what_changed_meanwhile(make_rig: Callable[..., Rig]) -> None:
    """Pages are built once and kept, so that they open fast; each opening still reads afresh.

    The policy file edited while its page was closed: the page opened again says what the new
    file says, not what it said the first time.
    """
    rig = make_rig()
    app = rig.app
    policy = Path(rig.env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default" / "policy.toml"
    policy.unlink(missing_ok=True)
    async with rig.running() as pilot:
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, PolicyScreen), "the policy screen")
        await on_screen(pilot, "Approval policy", "not there yet")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, PolicyScreen), "the policy screen to close")

        policy.write_text(
            'default = "human"\n\n[[rule]]\npermission = "bash"\npattern = "git status*"\nanswer = "agent"\n'
        )
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, PolicyScreen), "the policy screen again")
        text = await on_screen(pilot, "Approval policy", "in use", "git status*")
        assert "not there yet" not in text
        await pilot.press("escape")
        assert rig.problems() == []


def squash_spaces(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# 12. losing a race: "already answered by …" is a clear notice, one by one and in a batch
# ---------------------------------------------------------------------------------------------


async def test_already_answered_is_a_clear_notice(
    make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_quietly(rig, "BASH echo raced", title="raced session")
        request = await until(pilot, lambda: pending_permission(app, sid), "the permission")
        await until(pilot, lambda: app.inbox.highlighted_id == request.id, "the permission highlighted")
        # The agent's claim wins just before the human's key press (every claim finds it there).
        won = Claim(request.id, sid, "once", "agent", "mcp", "claude-code", time.time())
        monkeypatch.setattr(rig.registry, "claim", lambda *args, **kwargs: won)
        await looked_at(pilot, app, request.id)
        await pilot.press("o")
        note = await until(pilot, lambda: next((n for n in rig.notes if n.title == "Already answered"), None), "notice")
        assert note.severity == "warning"
        assert note.message.startswith("Run command · raced session\nAlready answered by agent (claude-code) at ")
        assert note.message.endswith(": once")
        await on_screen(pilot, "Already answered", "Already answered by agent (claude-code)")
        assert not any(n.title == "Not sent" for n in rig.notes)

        # The same in a batch: the summary names the session and who won.
        await pilot.press("space", "o")
        note = await until(
            pilot, lambda: next((n for n in rig.notes if n.title == "1 not sent — already answered"), None), "batch"
        )
        assert note.message.startswith("• raced session: already answered by agent (claude-code) at ")
        monkeypatch.undo()
        await pilot.press("o")  # the real reply still works afterwards
        await until(pilot, lambda: is_idle(app, sid), "the session to finish")


# ---------------------------------------------------------------------------------------------
# 13. attached front ends: the workers screen and the status line's agent count
# ---------------------------------------------------------------------------------------------


async def test_workers_screen_shows_attached_agent(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_quietly(rig, "Say exactly 'hi'", title="watched by an agent")
        await on_screen(pilot, "no agents", widget=app.status_line)
        member = rig.registry.register_member("agent", "test-agent", "9.8.7")
        rig.registry.update_member(member, in_flight=f"run {sid}")
        await until(pilot, lambda: "1 agent" in status_text(app), "the status line to count the agent", timeout=5)

        await pilot.press("w")
        screen = await until(
            pilot, lambda: app.screen if isinstance(app.screen, WorkersScreen) else None, "the workers screen"
        )
        text = await on_screen(pilot, "Attached front ends", "test-agent", "9.8.7", "run “watched by an agent”")
        line = next(line for line in text.splitlines() if "test-agent" in line)
        assert "agent" in line.split() and str(os.getpid()) in line, line
        # The call's duration counts up while the screen is open (it refreshes every second).
        def counted() -> bool:
            shown = re.search(r"run “watched by an agent”\s+(\d+)s", screen_text(app))
            return shown is not None and int(shown.group(1)) >= 2

        await until(pilot, counted, "the call's duration to count up", timeout=20)

        # The call ends, then the worker leaves: the open screen and the status line follow.
        rig.registry.update_member(member, in_flight=None)
        await until(pilot, lambda: "idle" in next(
            (ln for ln in screen_text(app).splitlines() if "test-agent" in ln), ""), "the call to end", timeout=5)
        rig.registry.remove_member(member)
        await until(pilot, lambda: "test-agent" not in screen_text(app), "the worker gone from the screen", timeout=5)
        assert screen is app.screen
        await pilot.press("escape")
        await until(pilot, lambda: "no agents" in status_text(app), "the status line to drop the count", timeout=5)
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 14. rules: `m` makes one from the inbox; it answers another session's request; revoking stops it
# ---------------------------------------------------------------------------------------------


async def test_rule_from_inbox_answers_other_sessions_until_revoked(
    make_rig: Callable[..., Rig], project_dir: Path
) -> None:
    if not hasattr(PoolActions, "make_rule"):
        pytest.skip("PoolActions.make_rule is not there yet (rules are built in orchestrator_tui/pool)")
    (project_dir / "notes.txt").write_text("RULE-TOKEN-1\n")
    (project_dir / "more.txt").write_text("RULE-TOKEN-2\n")
    (project_dir / "last.txt").write_text("RULE-TOKEN-3\n")
    rig = make_rig(permission={"read": "ask"})
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_quietly(rig, f"READ {project_dir}/notes.txt", title="reads the notes")
        request = await until(pilot, lambda: pending_permission(app, sid), "the read permission")
        await until(pilot, lambda: app.inbox.highlighted_id == request.id, "the permission highlighted")
        await looked_at(pilot, app, request.id)

        await pilot.press("m")
        dialog = await until(
            pilot, lambda: app.screen if isinstance(app.screen, MakeRuleScreen) else None, "the make-rule dialog"
        )
        # "Anything under this project" is what the dialog proposes, as the project's absolute glob
        # (decided on the absolute path, so it never covers files outside the project).
        assert dialog.pattern == f"{project_dir}/*", "it proposes the whole project"
        await on_screen(pilot, "Make a rule from this permission", "Permission read", "every read request matching")
        await pilot.press("ctrl+s")
        note = await until(pilot, lambda: next((n for n in rig.notes if n.title == "Rule made"), None), "the rule")
        (rule,) = rig.registry.rules()
        assert (rule.permission, rule.pattern, rule.reply) == ("read", f"{project_dir}/*", "once")
        assert note.message.startswith(f"Rule #{rule.id}: allow every read request matching {project_dir}/*")
        await until(pilot, lambda: is_idle(app, sid), "the first session to finish")

        # Another session's matching request is answered by the rule, by itself.
        sid2 = await start_quietly(rig, f"READ {project_dir}/more.txt", title="reads more")
        await until(pilot, lambda: is_idle(app, sid2), "the second session to finish without asking")
        by_rule = [d for d in rig.registry.decisions() if d.session_id == sid2]
        assert [(d.decided_by, d.decision) for d in by_rule] == [(rule.decider, "once")]
        await until(
            pilot, lambda: any(n.title == f"Rule #{rule.id} answered" for n in rig.notes), "the rule's notice"
        )
        # The decision log names the rule as the decider.
        app.clear_notifications()
        await pilot.press("L")
        await until(pilot, lambda: isinstance(app.screen, DecisionLogScreen), "the decision log")
        log_text = await on_screen(pilot, "reads more", f"rule #{rule.id}")
        row = next(line for line in log_text.splitlines() if "reads more" in line and "allow once" in line)
        assert f"rule #{rule.id}" in row and "rule" in row.split(), row
        await pilot.press("escape")

        # Revoke it on the rules screen: the next matching request waits for a human again.
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, RulesScreen), "the rules screen")
        await on_screen(pilot, f"#{rule.id}", "read", "allow")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the revoke confirmation")
        await on_screen(pilot, "Revoke rule?", f"rule #{rule.id}")
        await pilot.press("y")
        await until(pilot, lambda: rig.registry.rules() == [], "the rule revoked")
        await on_screen(pilot, "No rules yet")
        await pilot.press("escape")
        sid3 = await start_quietly(rig, f"READ {project_dir}/last.txt", title="reads the last")
        third = await until(pilot, lambda: pending_permission(app, sid3), "the third request to wait for a human")
        await until(pilot, lambda: third.id in inbox_ids(app), "the third request in the inbox")
        assert rig.registry.decisions(request_id=third.id) == []
        assert rig.problems() == []


# ---------------------------------------------------------------------------------------------
# 15. no blind approvals: a key answers only what has been on screen, under the cursor, 0.5 s
# ---------------------------------------------------------------------------------------------


async def test_repeated_presses_never_answer_a_request_that_moved_under_the_cursor(
    make_rig: Callable[..., Rig], long_settle: None
) -> None:
    """The issue's repro: pressing `o` again and again, a request that arrived (or moved under
    the cursor) mid-burst was answered by presses made before it was even drawn. Now new
    requests join the end of the inbox without moving the cursor, the burst answers only the
    request that was looked at, and the one that then moves under the cursor waits for a
    deliberate press: none of the burst's presses answers it, a press after looking at it does."""
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        first = await start_quietly(rig, "BASH echo looked-at", title="the one I read")
        a = await until(pilot, lambda: pending_permission(app, first), "the first permission")
        await until(pilot, lambda: app.inbox.highlighted_id == a.id, "the first permission highlighted")
        await looked_at(pilot, app, a.id)

        # A new request joins the end of the inbox; the cursor stays where the person is reading.
        second = await start_quietly(rig, "BASH echo arrived-later", title="arrived later")
        b = await until(pilot, lambda: pending_permission(app, second), "the second permission")
        await until(pilot, lambda: inbox_ids(app) == [a.id, b.id], "the second request listed after the first")
        await pilot.pause(0.2)
        assert app.inbox.highlighted_id == a.id, "a new request moved the cursor"

        # A third one is on its way while the person hammers `o` (20 presses a second).
        third = await start_quietly(rig, "BASH echo mid-burst", title="arrived mid-burst")
        drawn_presses = 0
        highlighted: list[str | None] = []
        deadline = time.monotonic() + SLOW
        while drawn_presses < 8:
            await pilot.press("o")
            highlighted.append(app.inbox.highlighted_id)
            if app.inbox.shown_since(b.id) is not None:
                drawn_presses += 1  # presses made while `b` is on screen under the cursor
            assert time.monotonic() < deadline, (
                "the second request never moved under the cursor: "
                f"inbox {inbox_ids(app)}, highlighted {highlighted[-3:]}, a={a.id} b={b.id}, "
                f"decisions on a {rig.registry.decisions(request_id=a.id)}, "
                f"notes {[(n.title, n.message) for n in rig.notes]}"
            )
            await asyncio.sleep(0.05)
        c = await until(pilot, lambda: pending_permission(app, third), "the third permission")
        await until(pilot, lambda: c.id in inbox_ids(app), "the third request listed")

        # The burst answered the request that had been read, and only that one.
        await until(pilot, lambda: is_idle(app, first), "the first session to finish")
        assert [d.decision for d in rig.registry.decisions(request_id=a.id)] == ["once"]
        assert b.id in app.pool.permissions and rig.registry.decisions(request_id=b.id) == []
        assert c.id in app.pool.permissions and rig.registry.decisions(request_id=c.id) == []
        assert inbox_ids(app) == [b.id, c.id], "the inbox reordered"
        assert app.inbox.highlighted_id == b.id
        # After each press the cursor was on the request being answered, then on the next one.
        assert list(dict.fromkeys(highlighted)) in ([a.id, b.id], [b.id]), "the cursor went somewhere else"
        # The screen said why the presses did nothing (a warning toast), once per burst, not per press.
        notices = [n for n in rig.notes if n.title == "Not answered"]
        assert len(notices) == 1 and "look at it, then press again" in notices[0].message, notices
        assert notices[0].severity == "warning"

        # A human decision is still possible: looked at for 0.5 s, one press answers it.
        await looked_at(pilot, app, b.id)
        await pilot.press("o")

        # The next one moves under the cursor: a press right as it is drawn does nothing …
        await until(pilot, lambda: app.inbox.shown_since(c.id) is not None, "the third drawn under the cursor")
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, second), "the second session to finish")
        (decision,) = rig.registry.decisions(request_id=b.id)
        assert (decision.decided_by, decision.channel, decision.decision) == ("human", "dashboard", "once")
        assert c.id in app.pool.permissions and rig.registry.decisions(request_id=c.id) == []
        # … a press after looking at it answers it.
        await looked_at(pilot, app, c.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, third), "the third session to finish")
        assert [d.decision for d in rig.registry.decisions(request_id=c.id)] == ["once"]
        assert rig.problems() == [f"warning: Not answered: {n.message}" for n in rig.notes if n.title == "Not answered"]


async def test_batch_answers_only_marked_requests_that_were_on_screen(
    make_rig: Callable[..., Rig], long_settle: None
) -> None:
    """Marks + `o`: a marked request listed less than 0.5 s before the key is left for later
    (and the screen says so); the ones on screen long enough are answered."""
    rig = make_rig(**ASK_BASH)
    app = rig.app
    async with rig.running() as pilot:
        first = await start_quietly(rig, "BASH echo batch-seen", title="seen")
        a = await until(pilot, lambda: pending_permission(app, first), "the first permission")
        await until(pilot, lambda: a.id in inbox_ids(app), "it listed")
        await looked_at(pilot, app, a.id)
        second = await start_quietly(rig, "BASH echo batch-seen", title="seen too, later")
        b = await until(pilot, lambda: pending_permission(app, second), "the second permission")
        # `*` the moment the identical second request is drawn in the list, then `o` at once.
        await until(pilot, lambda: app.inbox.listed_since(b.id) is not None, "the second request drawn")
        await pilot.press("asterisk", "o")
        await until(pilot, lambda: is_idle(app, first), "the first session to finish")
        assert [d.decision for d in rig.registry.decisions(request_id=a.id)] == ["once"]
        assert b.id in app.pool.permissions and rig.registry.decisions(request_id=b.id) == []
        assert app.inbox.marked == {b.id}, "the mark stays for the next press"
        note = await until(pilot, lambda: next((n for n in rig.notes if n.title == "Not answered"), None), "why")
        assert "1 marked request was listed just now and not answered" in note.message
        # Looked at, the next press answers it.
        await until(
            pilot,
            lambda: (since := app.inbox.listed_since(b.id)) is not None
            and time.monotonic() - since > widgets_module.SETTLE_SECONDS,
            "the second request on screen long enough",
        )
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, second), "the second session to finish")
        assert [d.decision for d in rig.registry.decisions(request_id=b.id)] == ["once"]


# ---------------------------------------------------------------------------------------------
# 16. "mark all like this" marks only requests that approve exactly the same thing
# ---------------------------------------------------------------------------------------------


async def test_mark_all_like_this_compares_what_is_approved(make_rig: Callable[..., Rig], project_dir: Path) -> None:
    """Three changes to one file: two identical, one with a different diff. Same permission type
    ("edit"), same patterns ("notes.txt"), same "always" ("*"): only the diff tells them apart,
    and `*` must not batch what the human has not seen. `o` then answers the two identical ones.

    (Written with the `write` tool: OpenCode 1.18.33 runs `edit` calls on one file one at a time,
    permission included, so two edits of one file are never pending together; writes are.)
    """
    (project_dir / "notes.txt").write_text("alpha\n")
    rig = make_rig(permission={"edit": "ask"})
    app = rig.app
    async with rig.running() as pilot:
        same = f"WRITE {project_dir}/notes.txt beta"
        sids = {
            "first": await start_quietly(rig, same, title="change one"),
            "different": await start_quietly(rig, f"WRITE {project_dir}/notes.txt rm -rf ~", title="change two"),
            "identical": await start_quietly(rig, same, title="change three"),
        }
        requests = {
            name: await until(pilot, lambda sid=sid: pending_permission(app, sid), f"the {name} change")
            for name, sid in sids.items()
        }
        await until(pilot, lambda: len(inbox_ids(app)) == 3, "three changes in the inbox")
        patterns = {(r.permission, tuple(r.patterns), tuple(r.always)) for r in requests.values()}
        assert patterns == {("edit", ("notes.txt",), ("*",))}, f"the requests differ in type or patterns: {patterns}"
        diffs = {name: (r.metadata or {}).get("diff") for name, r in requests.items()}
        assert diffs["first"] == diffs["identical"] != diffs["different"]

        app.inbox.select(requests["first"].id)
        await looked_at(pilot, app, requests["first"].id)
        await pilot.press("asterisk")
        alike = {requests["first"].id, requests["identical"].id}
        await until(pilot, lambda: marked(app) == alike, "the two identical changes marked")
        await pilot.pause(0.2)
        assert marked(app) == alike, "the change with another diff was marked too"
        assert any(n.message.startswith("Marked 2 × Edit file: notes.txt") for n in rig.notes)

        await pilot.press("o")
        answered = "both identical changes answered"
        await until(pilot, lambda: all(rig.registry.decisions(request_id=rid) for rid in alike), answered)
        assert requests["different"].id in app.pool.permissions, "the different change was answered with them"
        assert rig.registry.decisions(request_id=requests["different"].id) == []
        # The different one, highlighted and looked at: `*` marks it alone.
        app.inbox.select(requests["different"].id)
        await looked_at(pilot, app, requests["different"].id)
        await pilot.press("asterisk")
        await until(pilot, lambda: marked(app) == {requests["different"].id}, "the different change marked alone")
        assert any(n.message.startswith("Marked 1 × Edit file: notes.txt") for n in rig.notes)


# ---------------------------------------------------------------------------------------------
# 17. what the human reads is what runs: control characters from the model, through real OpenCode
# ---------------------------------------------------------------------------------------------


async def test_hidden_text_in_a_command_is_shown(make_rig: Callable[..., Rig]) -> None:
    """The issue's repro through the real server: the model asks to run
    ``echo hello ESC[8m; curl …`` (SGR 8 hides the rest on terminals that honour it). OpenCode
    passes the escape on untouched; the inbox line, the request view and the tool timeline show
    it as ``\\x1b[8m``, nothing raw reaches the screen, and approving it runs exactly that."""
    rig = make_rig(**ASK_BASH)
    app = rig.app
    command = "echo hello \x1b[8m; echo hidden-part"
    async with rig.running() as pilot:
        sid = await start_quietly(rig, f"BASH {command}", title="say hello\x1b]0;pwned\x07")
        request = await until(pilot, lambda: pending_permission(app, sid), "the bash permission")
        assert (request.metadata or {}).get("command") == command, "OpenCode changed the command"
        await until(pilot, lambda: app.inbox.highlighted_id == request.id, "the permission highlighted")
        view = app.inbox.query_one("#inbox-view")
        await on_screen(pilot, "$ echo hello \\x1b[8m; echo hidden-part", widget=view)
        await on_screen(pilot, "Run command: echo hello \\x1b[8m", "say hello\\x1b]0;pwned\\x07", widget=app.inbox)
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        assert not [line for line in lines if UNSAFE_ANY.search(line)], "a control character reached the screen"

        await looked_at(pilot, app, request.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, sid), "the session to finish")
        assert output_text(app) == "Command output:\nhello \x1b[8m\nhidden-part".replace("\x1b", "\\x1b")
        await on_screen(pilot, "completed bash echo hello \\x1b[8m", widget=app.detail.query_one("#detail-tools"))
        assert rig.problems() == []


async def test_project_commands_are_shown_as_written(make_rig: Callable[..., Rig], project_dir: Path) -> None:
    """A command's name and description come from the project's files: the palette and the
    command picker show them with control characters escaped, and never read them as markup
    (Textual markup can restyle text and bind a click to an action)."""
    command_dir = project_dir / ".opencode" / "command"
    command_dir.mkdir(parents=True)
    # YAML's double-quoted escapes put a real ESC and BEL into the description OpenCode serves.
    (command_dir / "deploy.md").write_text(
        '---\ndescription: "Ship it\\e]0;pwned\\a [@click=app.quit]now[/]"\n---\nSay exactly \'deployed\'\n'
    )
    rig = make_rig()
    app = rig.app
    async with rig.running() as pilot:
        command = await until(
            pilot, lambda: next((c for c in app.known_commands if c.name == "deploy"), None), "the project's command"
        )
        assert command.description == "Ship it\x1b]0;pwned\x07 [@click=app.quit]now[/]", command.description
        shown_as = "Ship it\\x1b]0;pwned\\x07 [@click=app.quit]now[/]"

        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await type_text(pilot, "deploy")
        text = await on_screen(pilot, "Run /deploy", shown_as)
        assert not UNSAFE_ANY.search(text.replace("\n", "")), "a control character reached the screen"
        await pilot.press("escape")

        sid = await start_quietly(rig, "Say exactly 'hi'", title="gets the command")
        await until(pilot, lambda: sid in app.session_list.rows, "the session listed")
        app.session_list.select(sid)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CommandPickerScreen), "the command picker")
        await on_screen(pilot, f"deploy  {shown_as}")
        assert app.is_running, "a description's markup ran an action"
        assert rig.problems() == []
