"""OpenCode dies while a run waits: the agent is told what happened and how to go on.

The managed server is SIGKILLed (its whole group) while a run waits on a turn, or holds a
permission for a human; the pool restarts it. OpenCode keeps turns and pending requests in
memory only, so the turn is gone, the request is gone, and the tool call that asked stays
"running" in the stored transcript forever. Each test checks what the agent is told, by every
tool that could tell it, and that the session goes on when the agent sends a message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator_tui.opencode.models import PermissionRequest, SessionStatus
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import Internal, InvalidInput
from orchestrator_tui.orchestrator.tools import Orchestrator
from orchestrator_tui.orchestrator.views import INTERRUPTED_TOOL
from orchestrator_tui.pool.policy import load_policy, policy_path
from orchestrator_tui.pool.state import Pool

pytestmark = pytest.mark.real_opencode
SLOW = 90.0


def kill_server(orch: Orchestrator) -> int:
    snapshot = orch.service.handle.current
    assert snapshot is not None and snapshot.pid is not None
    os.killpg(snapshot.pid, signal.SIGKILL)
    return snapshot.pid


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = SLOW) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def test_a_run_waiting_when_the_server_dies_is_told_and_can_continue(orchestrator: Orchestrator) -> None:
    session = await (await orchestrator.acquire()).client.create_session()
    sid = session.id
    waiting = asyncio.ensure_future(orchestrator.run(t.RunInput(session_id=sid, message="HANG")))
    await wait_until(
        lambda: (
            orchestrator.service.pool.sessions.get(sid)
            and orchestrator.service.pool.sessions[sid].status.value == "busy"
        ),
        "the turn to start",
    )
    old = kill_server(orchestrator)
    with pytest.raises(Internal) as info:
        await asyncio.wait_for(waiting, SLOW)
    text = str(info.value)
    assert f"OpenCode stopped while session '{sid}' was working and was restarted" in text, text
    assert f"call run with session_id='{sid}' and a message to continue" in text
    assert "RuntimeError" not in text and "client has been closed" not in text
    assert orchestrator.service.handle.current is not None and orchestrator.service.handle.current.pid != old

    # Asked again later, the session says its last turn did not finish (not "completed" and silent).
    again = await asyncio.wait_for(orchestrator.run(t.RunInput(session_id=sid)), SLOW)
    assert again.output.status == t.RunStatus.COMPLETED and again.output.response is None
    (warning,) = again.output.warnings
    assert f"The last turn of session '{sid}' did not finish and nothing runs in it now" in warning
    # And it goes on with a message.
    on = await asyncio.wait_for(
        orchestrator.run(t.RunInput(session_id=sid, message="Say exactly 'back' and nothing else.")), SLOW
    )
    assert on.output.response == "back"


async def test_a_held_permission_lost_in_a_restart_is_reported_as_lost(
    make_orchestrator: Callable[..., Orchestrator],
) -> None:
    orch = make_orchestrator(permission={"bash": "ask"})
    registry = orch.registry
    assert registry is not None
    path = policy_path(registry.path.parent)
    path.write_text('[[rule]]\npermission = "bash"\nanswer = "human"\n')
    orch.policy = load_policy(path)
    human = registry.register_member("human", "orchestrator-tui")  # a dashboard is attached: the run holds
    try:
        session = await (await orch.acquire()).client.create_session()
        sid = session.id
        held = asyncio.ensure_future(orch.run(t.RunInput(session_id=sid, message="BASH echo lost")))
        request: PermissionRequest = await wait_until(
            lambda: next((p for p in orch.service.pool.permissions.values() if p.sessionID == sid), None),
            "the bash permission",
        )
        await asyncio.sleep(0.5)
        assert not held.done()  # held for the human
        kill_server(orch)
        with pytest.raises(Internal) as info:
            await asyncio.wait_for(held, SLOW)
        text = str(info.value)
        assert f"OpenCode stopped while session '{sid}' was working, waiting for the bash permission request " in text
        assert f"'{request.id}' (echo lost)" in text and f"session_id='{sid}'" in text

        # Answering it says it was lost, not "may have already been responded to".
        for rid in (request.id, None):
            with pytest.raises(InvalidInput) as lost:
                await orch.respond_permission(
                    t.RespondPermissionInput(session_id=sid, permission_request_id=rid, reply=t.PermissionReply.ONCE)
                )
            message = str(lost.value)
            assert f"The bash permission request '{request.id}' (echo lost) was lost" in message, message
            assert "the OpenCode server that held it stopped" in message and "may have already" not in message
        # The tool call that asked is shown as interrupted, not running forever.
        state = await orch.get_session_state(t.GetSessionStateInput(session_id=sid))
        bash = next(c for c in state.recent_tool_calls if c.tool_name == "bash")
        assert isinstance(bash.state, t.ToolStateError) and bash.state.message == INTERRUPTED_TOOL
        assert isinstance(state.status, t.SessionStatusIdle)
        # run(session_id) says what became of the turn.
        resumed = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid)), SLOW)
        (warning,) = resumed.output.warnings
        assert "did not finish" in warning and f"the bash permission request '{request.id}'" in warning
        assert "was lost with it" in warning
    finally:
        registry.remove_member(human)


def test_tool_calls_of_an_idle_session_are_not_running_forever() -> None:
    """The dashboard's timeline: a call still running when its session turns idle was interrupted."""
    from orchestrator_tui.opencode.models import Part, PartUpdated, ToolState

    pool = Pool()
    part = Part(
        id="prt_1",
        type="tool",
        tool="bash",
        callID="call_1",
        sessionID="ses_1",
        messageID="msg_1",
        state=ToolState(status="running"),
    )
    pool.apply(None, PartUpdated(type="message.part.updated", properties={"sessionID": "ses_1", "part": part}))
    pool.load_statuses({"ses_1": SessionStatus(type="busy")})
    assert pool.sessions["ses_1"].tool_calls["call_1"].status == "running"
    pool.load_statuses({})
    assert pool.sessions["ses_1"].tool_calls["call_1"].status == "interrupted"
