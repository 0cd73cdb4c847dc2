"""The seed's wiremock suites (and the intent of its timeout cases) against a fake OpenCode.

These scenarios need exact status / permission / message sequences and races that the real
OpenCode cannot be made to produce on demand, so they run over :mod:`fake_opencode`, a real HTTP
server on 127.0.0.1. The orchestrator is built exactly as the seed's harness builds it: an
*external* preloaded snapshot whose client has no directory and a 5 s timeout. The event stream
stalls unless a test scripts it, so the 1 s REST poll drives completion (as in the seed).

Deliberate differences from the reference that these tests pin (see ``orchestrator/run.py``):
a command POST that timed out is never sent again (the seed's bug4 expects a re-send);
timeout texts state the configured duration and 0 disables a limit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_opencode import (
    FakeOpenCode,
    Reply,
    Request,
    Seq,
    SwitchAfter,
    answered,
    assistant_message,
    build_orchestrator,
    commands_json,
    message_list,
    permission_json,
    question_json,
    session_json,
    status_busy,
    status_idle,
    status_retry,
    user_message,
)

from orchestrator_tui.opencode import client as client_module
from orchestrator_tui.orchestrator.errors import Cancelled, Internal, InvalidInput
from orchestrator_tui.orchestrator.tools import Orchestrator

SID = "ses_test1"
#: What a message id we choose looks like (OpenCode's ascending ``msg_`` ids).
MESSAGE_ID = re.compile(r"msg_[0-9a-f]{12}[0-9A-Za-z]{14}")


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenCode]:
    async with FakeOpenCode() as server:
        yield server


@pytest.fixture
async def make(fake: FakeOpenCode, tmp_path: Path) -> AsyncIterator[Callable[..., Orchestrator]]:
    """``make(idle_grace_ms=..., agentic_toml=..., ...)`` → an Orchestrator over ``fake``."""
    made: list[Orchestrator] = []

    def build(**kw: Any) -> Orchestrator:
        orch = build_orchestrator(fake, tmp_path / f"orch{len(made)}", **kw)
        made.append(orch)
        return orch

    yield build
    for orch in made:
        await orch.close()


async def call(orch: Orchestrator, tool: str, timeout: float = 10.0, **arguments: Any) -> Any:
    """One tool call through the adapters' entry point; returns the output model."""
    output, _ = await asyncio.wait_for(orch.call(tool, arguments), timeout)
    return output


def mount_session(fake: FakeOpenCode, sid: str = SID, **overrides: Any) -> None:
    """POST /session creates ``sid``; GET /session/{id} finds it."""
    fake.post("/session", session_json(sid, **overrides))
    fake.get("/session/{id}", session_json(sid, **overrides))


def no_requests(fake: FakeOpenCode) -> None:
    fake.get("/permission", [])
    fake.get("/question", [])


def posts(fake: FakeOpenCode) -> list[str]:
    return [p for p in fake.paths() if p.startswith("POST ")]


# ============================================================================ cancellation


async def test_run_returns_cancelled_when_the_call_is_cancelled(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_busy(SID))
    fake.post("/session/{id}/command", Reply({}, delay=30))
    fake.get("/command", commands_json("research", "plan", "build"))
    orch = make()

    task = asyncio.create_task(orch.call("run", {"command": "research", "message": "caching strategies"}))
    await fake.wait_for("POST", f"/session/{SID}/command")
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(Cancelled) as info:
        await asyncio.wait_for(task, 2)
    assert str(info.value) == "cancelled"
    assert fake.count("POST", f"/session/{SID}/command") == 1
    # The OpenCode session itself is never aborted.
    assert not [p for p in fake.paths() if p.endswith("/abort")]

    # The same orchestrator (same handle) keeps working.
    listed = await call(orch, "list_commands")
    assert [c.name for c in listed.commands] == ["research", "plan", "build"]


async def test_respond_permission_returns_cancelled_during_monitoring(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", Seq([permission_json("per_1", SID)], []))
    fake.get("/question", [])
    reply = fake.post("/permission/{id}/reply", True)
    fake.get("/session/status", status_busy(SID))
    orch = make()

    task = asyncio.create_task(orch.call("respond_permission", {"session_id": SID, "reply": "once"}))
    # Continuation preflight + the loop's first poll: monitoring after the reply has begun.
    await fake.wait_for("GET", "/session/status", 2)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(Cancelled):
        await asyncio.wait_for(task, 2)
    assert [r.json for r in reply.calls] == [{"reply": "once"}]
    assert reply.calls[0].params == {"id": "per_1"}


# ============================================================================ command filtering


@pytest.mark.parametrize(
    ("names", "toml", "expected"),
    [
        pytest.param(("test", "build", "lint"), 'deny = ["build"]', ["test", "lint"], id="deny-only"),
        pytest.param(("test", "build", "lint"), 'allow = ["build"]', ["build"], id="allow-only"),
        pytest.param(
            ("test", "build", "lint"), 'allow = ["test", "build"]\ndeny = ["build"]', ["test"], id="deny-wins-overlap"
        ),
        pytest.param(("test", "build", "lint"), 'deny = [" build "]', ["test", "lint"], id="entries-trimmed"),
        pytest.param(("Build", "build"), 'deny = ["Build"]', ["build"], id="case-sensitive"),
    ],
)
async def test_list_commands_applies_the_policy(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], names: tuple[str, ...], toml: str, expected: list[str]
) -> None:
    fake.get("/command", commands_json(*names))
    orch = make(agentic_toml=f"[orchestrator.commands]\n{toml}\n")
    out = await call(orch, "list_commands")
    assert out.to_json() == {"commands": [{"name": n, "description": f"{n} description"} for n in expected]}
    assert out.text() == (
        "Available commands:\n"
        + "".join(f"  {n} - {n} description\n" for n in expected)
        + "\nUse orchestrator_run(command=<name>, message=<args>) to execute\n"
    )


@pytest.mark.parametrize(
    ("toml", "why"),
    [
        ('deny = ["research"]', "it is blocked by orchestrator.commands.deny."),
        ('allow = ["plan"]', "it is not present in orchestrator.commands.allow."),
    ],
)
async def test_blocked_run_command_fails_before_session_resolution_or_dispatch(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], toml: str, why: str
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.post("/session/{id}/command", {})
    orch = make(agentic_toml=f"[orchestrator.commands]\n{toml}\n")

    with pytest.raises(InvalidInput) as info:
        await call(orch, "run", command="research", message="caching strategies")
    assert str(info.value) == f"invalid input: Command 'research' cannot be run because {why}"
    # Only the acquisition health probe (and the route family probe after it) reached the server.
    assert fake.paths() == ["GET /global/health", "GET /api/health"]
    await asyncio.sleep(0.2)
    assert not [p for p in fake.paths() if p.split(" ")[1].startswith("/session")]
    assert posts(fake) == []


# ============================================================================ fast idle race


async def test_fast_idle_prompt_completes_without_hanging(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    prompt = fake.post("/session/{id}/prompt_async", Reply(status=204))
    fake.get("/session/{id}/message", answered(fake, SID, "FAST_IDLE_DONE"))
    orch = make(idle_grace_ms=0)

    out = await call(orch, "run", timeout=2, message="  do it quickly \n")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "FAST_IDLE_DONE"}
    assert out.text() == f"✓ session completed {SID}\n\n--- Response ---\nFAST_IDLE_DONE"
    # A new session was created and the trimmed message sent as one text part, with our own id.
    assert fake.count("POST", "/session") == 1
    [body] = [r.json for r in prompt.calls]
    assert body == {"parts": [{"type": "text", "text": "do it quickly"}], "messageID": body["messageID"]}
    assert MESSAGE_ID.fullmatch(body["messageID"])


async def test_fast_idle_resume_after_permission_reply_completes_without_hanging(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", Seq([permission_json("per_1", SID)], []))
    fake.get("/question", [])
    fake.post("/permission/{id}/reply", True)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID, "RESUME_DONE"))
    orch = make(idle_grace_ms=0)

    out = await call(orch, "respond_permission", timeout=2, session_id=SID, reply="once")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "RESUME_DONE"}


# ============================================================================ list tools


async def test_list_sessions_returns_session_ids_without_status_when_status_fails(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/session", [session_json("ses-1"), session_json("ses-2")])  # /session/status unmocked: 404
    out = await call(make(), "list_sessions")
    sessions = out.to_json()["sessions"]
    assert [s["id"] for s in sessions] == ["ses-1", "ses-2"]
    assert all("status" not in s for s in sessions)
    # Ages come from OpenCode's millisecond timestamps; no status → "unknown".
    assert out.text(now_ms=1234567890 + 2 * 3600 * 1000) == (
        "Sessions (2):\n  ses-1 - Test Session (2h ago, unknown)\n  ses-2 - Test Session (2h ago, unknown)\n"
    )
    assert fake.calls("GET", "/session")[0].query == {"limit": "20"}


async def test_list_sessions_returns_empty_list(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    fake.get("/session", [])
    fake.get("/session/status", status_idle())
    out = await call(make(), "list_sessions")
    assert out.to_json() == {"sessions": []}
    assert out.text() == "Sessions (0):\n  (no sessions found)\n"


async def test_list_sessions_returns_enriched_fields(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    common = {"time": {"created": 10, "updated": 20}, "directory": "/tmp/project"}
    fake.get(
        "/session",
        [
            session_json("ses-1", path="src/a.rs", summary={"additions": 5, "deletions": 2, "files": 1}, **common),
            session_json("ses-2", path="src/b.rs", **common),
        ],
    )
    fake.get("/session/status", {**status_busy("ses-1"), **status_retry("ses-2", 2, "rate limited", 1234)})
    out = await call(make(), "list_sessions")
    assert out.to_json()["sessions"] == [
        {
            "id": "ses-1",
            "title": "Test Session",
            "updated": 20,
            "created": 10,
            "directory": "/tmp/project",
            "path": "src/a.rs",
            "status": {"state": "busy"},
            "change_stats": {"additions": 5, "deletions": 2, "files": 1},
            "launched_by_you": False,
        },
        {
            "id": "ses-2",
            "title": "Test Session",
            "updated": 20,
            "created": 10,
            "directory": "/tmp/project",
            "path": "src/b.rs",
            "status": {"state": "retry", "attempt": 2, "message": "rate limited", "next": 1234},
            "launched_by_you": False,
        },
    ]


async def test_list_sessions_marks_sessions_launched_by_this_orchestrator(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # ses-1 is created by a run of this orchestrator (the spec's "spawned set").
    mount_session(fake, "ses-1")
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    fake.get("/session/{id}/message", answered(fake, "ses-1", "ok"))
    orch = make(idle_grace_ms=0)
    assert (await call(orch, "run", message="start")).session_id == "ses-1"

    fake.get("/session", [session_json("ses-1"), session_json("ses-2")])
    out = await call(orch, "list_sessions")
    assert [(s["id"], s["launched_by_you"], s["status"]) for s in out.to_json()["sessions"]] == [
        ("ses-1", True, {"state": "idle"}),
        ("ses-2", False, {"state": "idle"}),
    ]
    assert "  ses-1 - Test Session (" in out.text() and ", idle) [launched by you]\n" in out.text()


@pytest.mark.parametrize(
    ("status", "expected", "word"),
    [
        (status_idle(), {"state": "idle"}, "Idle"),
        (status_busy("ses-1"), {"state": "busy"}, "Busy"),
        (
            status_retry("ses-1", 3, "provider overloaded", 9876),
            {"state": "retry", "attempt": 3, "message": "provider overloaded", "next": 9876},
            "Retry (attempt 3, next at 9876, reason: provider overloaded)",
        ),
    ],
    ids=["idle", "busy", "retry"],
)
async def test_get_session_state_reports_the_status(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], status: dict[str, Any], expected: Any, word: str
) -> None:
    fake.get("/session/{id}", session_json("ses-1", path="src/session.rs", time={"created": 5, "updated": 1234}))
    fake.get("/session/status", status)
    fake.get("/session/{id}/message", [])
    out = await call(make(), "get_session_state", session_id="ses-1")
    assert out.to_json() == {
        "session_id": "ses-1",
        "title": "Test Session",
        "directory": "/tmp",
        "path": "src/session.rs",
        "status": expected,
        "launched_by_you": False,
        "pending_message_count": 0,
        "last_activity": 1234,  # no messages: the session's own update time
        "recent_tool_calls": [],
    }
    assert f"  Status: {word}\n" in out.text()
    assert "  Path: src/session.rs\n" in out.text()


def tool_part(sid: str, mid: str, call_id: str, tool: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"prt-{call_id}", "sessionID": sid, "messageID": mid, "type": "tool", "callID": call_id,
            "tool": tool, "state": state}  # fmt: skip


async def test_get_session_state_summarizes_messages_and_launched_by_you(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake, "ses-1")
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    fake.get("/session/{id}/message", answered(fake, "ses-1", "ok"))
    orch = make(idle_grace_ms=0)
    await call(orch, "run", message="start")  # ses-1 is launched by this orchestrator

    states = [
        ("call-pending", {"status": "pending"}),
        ("call-running", {"status": "running", "input": {}, "time": {"start": 20}}),
        ("call-completed", {"status": "completed", "input": {}, "output": "ok", "title": "t", "metadata": {},
                            "time": {"start": 30, "end": 31}}),
        ("call-error", {"status": "error", "input": {}, "error": "boom", "time": {"start": 40, "end": 41}}),
    ]  # fmt: skip
    messages = [
        assistant_message("ses-1", mid=f"a{i}", parts=[tool_part("ses-1", f"a{i}", cid, "bash", state)], created=i)
        for i, (cid, state) in enumerate(states, start=1)
    ]
    messages.append(user_message("ses-1", mid="u9", created=6))
    fake.get("/session/{id}/message", messages)

    out = await call(orch, "get_session_state", session_id="ses-1")
    data = out.to_json()
    assert data["launched_by_you"] is True
    assert data["pending_message_count"] == 1
    assert data["last_activity"] == 6
    assert data["directory"] == "/tmp"
    assert "path" not in data  # OpenCode's "" path counts as absent
    assert data["recent_tool_calls"] == [
        {"call_id": "call-error", "tool_name": "bash", "state": {"status": "error", "message": "boom"},
         "started_at": 40, "completed_at": 41},
        {"call_id": "call-completed", "tool_name": "bash", "state": {"status": "completed"},
         "started_at": 30, "completed_at": 31},
        {"call_id": "call-running", "tool_name": "bash", "state": {"status": "running"}, "started_at": 20},
        {"call_id": "call-pending", "tool_name": "bash", "state": {"status": "pending"}},
    ]  # fmt: skip
    assert out.text().endswith(
        "  Recent tool calls:\n"
        "    call-error (bash) - error: boom\n"
        "    call-completed (bash) - completed\n"
        "    call-running (bash) - running\n"
        "    call-pending (bash) - pending\n"
    )


async def test_get_session_state_orders_tool_parts_recent_first_within_a_message(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/session/{id}", session_json("ses-1"))
    fake.get("/session/status", status_idle())
    parts = [
        tool_part("ses-1", "a1", "call-older", "read", {"status": "running", "time": {"start": 1}}),
        tool_part("ses-1", "a1", "call-newer", "write", {"status": "running", "time": {"start": 2}}),
    ]
    fake.get("/session/{id}/message", [assistant_message("ses-1", parts=parts)])
    out = await call(make(), "get_session_state", session_id="ses-1")
    assert [(c.call_id, c.tool_name) for c in out.recent_tool_calls] == [
        ("call-newer", "write"),
        ("call-older", "read"),
    ]


async def test_get_session_state_counts_each_trailing_user_message(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/session/{id}", session_json("ses-1"))
    fake.get("/session/status", status_idle())
    fake.get(
        "/session/{id}/message",
        [assistant_message("ses-1", "hi"), user_message("ses-1", "u2", 7), user_message("ses-1", "u3", 8)],
    )
    out = await call(make(), "get_session_state", session_id="ses-1")
    assert out.pending_message_count == 2
    assert out.last_activity == 8


@pytest.mark.parametrize(
    ("failing", "text"),
    [
        ("/session/status", "internal error: Failed to get session status: HTTP error 500: UnknownError: boom"),
        ("/session/{id}/message", "internal error: Failed to list messages: HTTP error 500: UnknownError: boom"),
    ],
)
async def test_get_session_state_errors_when_a_lookup_fails(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], failing: str, text: str
) -> None:
    fake.get("/session/{id}", session_json("ses-1"))
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", [])
    fake.get(failing, Reply({"name": "UnknownError", "data": {"message": "boom"}}, status=500))
    with pytest.raises(Internal) as info:
        await call(make(), "get_session_state", session_id="ses-1")
    assert str(info.value) == text


async def test_get_session_state_unknown_session_is_invalid_input(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get(
        "/session/{id}",
        lambda req: Reply(
            {"name": "NotFoundError", "data": {"message": f"Session not found: {req.params['id']}"}}, 404
        ),
    )
    orch = make()
    with pytest.raises(InvalidInput) as info:
        await call(orch, "get_session_state", session_id="ses_missing")
    assert str(info.value) == (
        "invalid input: Session 'ses_missing' not found. Use list_sessions to discover available sessions."
    )
    # A malformed id (OpenCode would answer 500) gets the same answer without a request.
    with pytest.raises(InvalidInput, match=r"Session 'bogus' not found\. Use list_sessions"):
        await call(orch, "get_session_state", session_id="bogus")
    assert fake.count("GET", "/session/bogus") == 0


async def test_list_commands_returns_available_commands(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    fake.get("/command", commands_json("test", "build", "lint"))
    out = await call(make(), "list_commands")
    assert [(c.name, c.description) for c in out.commands] == [
        ("test", "test description"),
        ("build", "build description"),
        ("lint", "lint description"),
    ]


async def test_list_commands_returns_empty_list(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    fake.get("/command", [])
    out = await call(make(), "list_commands")
    assert out.to_json() == {"commands": []}
    assert out.text() == (
        "Available commands:\n  (no commands available)\n"
        "\nUse orchestrator_run(command=<name>, message=<args>) to execute\n"
    )


# ============================================================================ permission flow


async def test_bug1_completion_retries_messages_until_visible(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", Seq(status_busy(SID), status_busy(SID), status_idle()))
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    messages = fake.get("/session/{id}/message", Seq(answered(fake, SID), answered(fake, SID, "FINAL_RESPONSE")))
    orch = make()

    out = await call(orch, "run", timeout=5, session_id=SID, message="write the file")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "FINAL_RESPONSE"}
    assert messages.count >= 2  # the transcript was read again until the answer was visible


async def test_bug2_reject_returns_no_response_and_a_warning_not_stale_text(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", Seq([permission_json("per_1", SID, "edit", ["src/main.rs"])], []))
    fake.get("/question", [])
    reply = fake.post("/permission/{id}/reply", True)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID, "I_WILL_CREATE_FILE"))
    orch = make()

    out = await call(orch, "respond_permission", timeout=5, session_id=SID, reply="reject")
    assert out.to_json() == {
        "session_id": SID,
        "status": "completed",
        "warnings": [
            "Permission rejected for 'edit'. Patterns: src/main.rs. "
            "Session stopped without generating a new assistant response."
        ],
    }
    assert [r.json for r in reply.calls] == [{"reply": "reject"}]
    assert "  warning: Permission rejected for 'edit'" in out.text()
    assert "--- Response ---" not in out.text()


async def test_bug3_respond_permission_returns_the_new_response_in_one_call(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", Seq([permission_json("per_1", SID)], []))
    fake.get("/question", [])
    reply = fake.post("/permission/{id}/reply", True)
    status = fake.get("/session/status", Seq(status_idle(), status_busy(SID), status_idle()))
    fake.get(
        "/session/{id}/message",
        SwitchAfter(status, 2, message_list(SID, "OLD_RESPONSE"), message_list(SID, "PERMISSION_GRANTED_RESPONSE")),
    )
    orch = make(idle_grace_ms=5000)  # completion must come from the observed busy, not the grace

    out = await call(orch, "respond_permission", timeout=5, session_id=SID, reply="once", message="approved")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "PERMISSION_GRANTED_RESPONSE"}
    assert [r.json for r in reply.calls] == [{"reply": "once", "message": "approved"}]


#: OpenCode 1.18.33's answer to GET /permission while a request it cannot serialize is pending.
UNLISTABLE = Reply({"name": "BadRequest", "data": {"message": "cannot serialize metadata"}}, status=400)
UNLISTED = "HTTP error 400: BadRequest: cannot serialize metadata"


async def test_a_permission_list_opencode_cannot_give_is_a_warning_and_the_explicit_id_is_answered(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    """0.7.x: the request id the agent gives is trusted; the list failing is said, not fatal."""
    mount_session(fake)
    fake.get("/permission", UNLISTABLE)
    fake.get("/question", [])
    reply = fake.post("/permission/{id}/reply", True)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID, "DONE"))
    orch = make()

    out = await call(orch, "respond_permission", session_id=SID, permission_request_id="per_1", reply="reject")
    assert [r.path for r in reply.calls] == ["/permission/per_1/reply"]
    assert out.status.value == "completed"
    assert out.warnings[:2] == [
        f"Permission refresh failed after reply ({UNLISTED}); permission state could not be listed and may be "
        "stale or malformed. Continuing with polling fallback.",
        f"Permission validation failed for request 'per_1' ({UNLISTED}); submitting reply using the provided "
        "request id.",
    ], out.warnings


async def test_a_permission_list_opencode_cannot_give_and_no_id_is_invalid_input(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", UNLISTABLE)
    fake.get("/question", [])
    reply = fake.post("/permission/{id}/reply", True)
    orch = make()

    with pytest.raises(InvalidInput) as info:
        await call(orch, "respond_permission", session_id=SID, reply="once")
    assert str(info.value) == (
        f"invalid input: Unable to discover a pending permission for session '{SID}': permission state could not "
        "be listed (HTTP 400). Permission state may be stale or malformed. Retry with permission_request_id (from "
        "run) if available; otherwise reopen the session or start a new one."
    )
    assert reply.count == 0


async def test_a_permission_reply_opencode_does_not_find_is_invalid_input(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    """Listed a moment ago, gone when the reply arrives (OpenCode's 404): the id is stale."""
    mount_session(fake)
    fake.get("/permission", [permission_json("per_1", SID)])
    fake.get("/question", [])
    fake.post("/permission/{id}/reply", Reply({"name": "NotFoundError", "data": {"message": "gone"}}, status=404))
    orch = make()

    with pytest.raises(InvalidInput) as info:
        await call(orch, "respond_permission", session_id=SID, permission_request_id="per_1", reply="once")
    assert str(info.value) == (
        "invalid input: Permission request 'per_1' was not found or is no longer pending (HTTP 404). It may be "
        f"stale. Re-run orchestrator_run(session_id='{SID}') to get the latest permission_request_id and retry."
    )


async def test_bug5_respond_permission_waits_and_does_not_return_pre_permission_text(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", Seq([permission_json("per_1", SID)], []))
    fake.get("/question", [])
    fake.post("/permission/{id}/reply", True)
    status = fake.get("/session/status", Seq(status_busy(SID), status_idle(), status_retry(SID, 1), status_idle()))
    fake.get(
        "/session/{id}/message",
        SwitchAfter(status, 3, message_list(SID, "PRE_PERMISSION_TEXT"), message_list(SID, "POST_PERMISSION_TEXT")),
    )
    orch = make(idle_grace_ms=5000)  # the early idle falls inside the grace; retry counts as busy

    out = await call(orch, "respond_permission", timeout=6, session_id=SID, reply="always")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "POST_PERMISSION_TEXT"}
    assert status.count >= 4


async def test_bug4_a_timed_out_command_is_not_sent_again(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port deviation: the command endpoint blocks until the turn ends, so a command
    # POST that timed out may be running; re-sending it would run the command twice.
    monkeypatch.setattr(client_module, "COMMAND_TIMEOUT", 1.0)
    mount_session(fake)
    no_requests(fake)
    # Nothing shows that the command started (0.7.10): the session stays idle and its message is not stored.
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID, "EARLIER_TEXT"))
    command = fake.post("/session/{id}/command", Reply({}, delay=30))
    orch = make(timeout=1.0)

    with pytest.raises(Internal) as info:
        await call(orch, "run", timeout=5, session_id=SID, command="research", message="caching")
    assert str(info.value).startswith(
        "internal error: Failed to dispatch command 'research': transport error before session start evidence: "
        "Transport error: "
    ), info.value
    await asyncio.sleep(0.3)
    assert command.count == 1
    body = command.calls[0].json
    assert body == {"command": "research", "arguments": "caching", "messageID": body["messageID"]}
    assert MESSAGE_ID.fullmatch(body["messageID"])


async def test_a_command_connection_lost_after_the_session_went_busy_is_supervised_with_a_warning(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    """0.7.10: the command POST lasts the whole turn; losing it once the turn started is no failure."""
    mount_session(fake)
    no_requests(fake)
    told_busy, dropped = asyncio.Event(), asyncio.Event()

    def status(_request: Request) -> Any:
        if dropped.is_set():
            return status_idle()
        told_busy.set()
        return status_busy(SID)

    fake.get("/session/status", status)

    async def drop_once_busy(_request: Request) -> Reply:
        await told_busy.wait()  # the run has asked, and been told the session is busy
        dropped.set()
        return Reply(drop=True)  # the connection closes unanswered

    command = fake.post("/session/{id}/command", drop_once_busy)
    fake.get("/session/{id}/message", answered(fake, SID, "COMMAND_DONE"))
    orch = make()

    out = await call(orch, "run", session_id=SID, command="research", message="caching")
    assert out.status.value == "completed" and out.response == "COMMAND_DONE", out
    [warning] = out.warnings
    assert warning.startswith(
        "OpenCode command transport error after start evidence; continuing supervision: Transport error: "
    ), warning
    assert command.count == 1


async def test_a_command_connection_lost_once_its_message_is_stored_is_supervised_with_a_warning(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    """No busy status seen, but the transcript holds the command's message (our id): it started."""
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    command = fake.post("/session/{id}/command", Reply(drop=True))
    fake.get("/session/{id}/message", answered(fake, SID, "COMMAND_DONE"))
    orch = make(timeout=5.0)

    out = await call(orch, "run", timeout=10, session_id=SID, command="research", message="caching")
    assert out.status.value == "completed" and out.response == "COMMAND_DONE", out
    assert [w.split(": Transport error: ")[0] for w in out.warnings] == [
        "OpenCode command transport error after start evidence; continuing supervision"
    ]
    assert command.count == 1


@pytest.mark.parametrize("status", [400, 404])
async def test_a_command_opencode_refuses_is_invalid_input(
    fake: FakeOpenCode, make: Callable[..., Orchestrator], status: int
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID))
    refusal = {"name": "NotFoundError", "data": {"message": "Command not found: research"}}
    fake.post("/session/{id}/command", Reply(refusal, status=status))
    orch = make()

    with pytest.raises(InvalidInput) as info:
        await call(orch, "run", session_id=SID, command="research", message="caching")
    assert str(info.value) == (
        f"invalid input: Failed to dispatch command 'research': HTTP error {status}: NotFoundError: "
        "Command not found: research"
    )


async def test_a_command_opencode_fails_is_an_internal_error(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID))
    fake.post("/session/{id}/command", Reply({"name": "UnknownError", "data": {"message": "boom"}}, status=500))
    orch = make()

    with pytest.raises(Internal) as info:
        await call(orch, "run", session_id=SID, command="research", message="caching")
    assert str(info.value) == (
        "internal error: Failed to dispatch command 'research': HTTP error 500: UnknownError: boom"
    )


class RefuseFirstCommand(httpx.AsyncBaseTransport):
    """A transport whose first command POST fails to connect (never reaches the server)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/command") and not self.refused:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_bug4_a_command_whose_connection_failed_is_retried_once(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", Seq(status_busy(SID), status_busy(SID), status_idle()))
    command = fake.post("/session/{id}/command", {"info": {}, "parts": []})
    fake.get("/session/{id}/message", answered(fake, SID, "COMMAND_DONE"))
    transport = RefuseFirstCommand()
    orch = make(timeout=1.0, transport=transport)

    out = await call(orch, "run", timeout=5, session_id=SID, command="research", message="caching")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "COMMAND_DONE"}
    assert transport.refused == 1
    [body] = [r.json for r in command.calls]
    assert body == {"command": "research", "arguments": "caching", "messageID": body["messageID"]}


# ============================================================================ question flow

QUESTION_VIEW = {
    "question": "Continue?",
    "header": "Question Header",
    "options": [{"label": "yes", "description": "Proceed"}, {"label": "no", "description": "Stop"}],
    "multiple": False,
    "custom": False,
}


async def test_pending_question_preflight_returns_question_required(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/session/status", status_idle())
    fake.get("/permission", [])
    fake.get("/question", [question_json("question-1", SID)])
    out = await call(make(), "run", session_id=SID)
    assert out.to_json() == {
        "session_id": SID,
        "status": "question_required",
        "question_request_id": "question-1",
        "questions": [QUESTION_VIEW],
    }
    assert out.text() == (
        f"? session question_required {SID}\n"
        "\n--- Question Request ---\n"
        "Request ID: question-1\n"
        "Header: Question Header\n"
        "Question 1: Continue?\n"
        "  - yes: Proceed\n"
        "  - no: Stop\n"
        "  multiple: false\n"
        "  custom: false\n"
        "\nTo respond: orchestrator_respond_question(session_id, action, answers)\n"
        "  action options: reply | reject\n"
        "  tip: include question_request_id=<Request ID> when provided\n"
    )
    assert fake.count("GET", f"/session/{SID}/message") == 0


async def test_poll_detected_question_returns_question_required(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/session/status", status_busy(SID))
    fake.get("/permission", [])
    fake.get("/question", Seq([], [question_json("question-2", SID, "Approve rollout?")]))
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    out = await call(make(), "run", timeout=3, session_id=SID, message="roll it out")
    assert out.status == "question_required"
    assert out.question_request_id == "question-2"
    assert [q.question for q in out.questions] == ["Approve rollout?"]


async def test_respond_question_reply_resumes_to_completed(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", [])
    fake.get("/question", Seq([question_json("question-1", SID)], [], []))
    reply = fake.post("/question/{id}/reply", True)
    fake.get("/session/status", Seq(status_busy(SID), status_busy(SID), status_idle()))
    fake.get("/session/{id}/message", message_list(SID, "QUESTION_REPLY_DONE"))
    out = await call(make(), "respond_question", timeout=5, session_id=SID, action="reply", answers=[["yes"]])
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "QUESTION_REPLY_DONE"}
    assert [(r.params, r.json) for r in reply.calls] == [({"id": "question-1"}, {"answers": [["yes"]]})]


async def test_respond_question_reject_completes_cleanly(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    mount_session(fake)
    fake.get("/permission", [])
    fake.get("/question", Seq([question_json("question-1", SID)], []))
    reject = fake.post("/question/{id}/reject", True)
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID))
    out = await call(make(), "respond_question", timeout=2, session_id=SID, action="reject", answers=[["ignored"]])
    assert out.to_json() == {"session_id": SID, "status": "completed"}
    assert [r.json for r in reject.calls] == [{}]
    assert fake.count("POST", "/question/question-1/reply") == 0


async def test_permission_wins_over_question(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    mount_session(fake)
    fake.get("/session/status", status_idle())
    fake.get("/permission", [permission_json("per_1", SID, "bash", ["rm -rf build"])])
    fake.get("/question", [question_json("question-1", SID)])
    out = await call(make(), "run", session_id=SID)
    assert out.to_json() == {
        "session_id": SID,
        "status": "permission_required",
        "permission_request_id": "per_1",
        "permission_type": "bash",
        "permission_patterns": ["rm -rf build"],
    }
    assert out.text() == (
        f"⏸ session permission_required {SID}\n"
        "\n--- Permission Request ---\n"
        "Type: bash\n"
        "Patterns: rm -rf build\n"
        "Request ID: per_1\n"
        "\nTo respond: orchestrator_respond_permission(session_id, reply)\n"
        "  reply options: once | always | reject\n"
        "  tip: include permission_request_id=<Request ID> when provided\n"
    )


async def test_respond_question_by_id_replies_to_that_question(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    fake.get("/permission", [])
    both = [question_json("q1", SID, "First?"), question_json("q2", SID, "Second?")]
    fake.get("/question", Seq(both, []))
    reply = fake.post("/question/q2/reply", True)  # only q2's reply route exists
    fake.get("/session/status", status_idle())
    fake.get("/session/{id}/message", message_list(SID, "SECOND_ANSWERED"))
    orch = make(idle_grace_ms=0)
    out = await call(
        orch, "respond_question", timeout=5, session_id=SID, question_request_id="q2", action="reply", answers=[["no"]]
    )
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "SECOND_ANSWERED"}
    assert [r.json for r in reply.calls] == [{"answers": [["no"]]}]


async def test_multiple_pending_questions_is_an_ambiguity_error(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/question", [question_json("q1", SID), question_json("q2", SID)])
    with pytest.raises(InvalidInput) as info:
        await call(make(), "respond_question", session_id=SID, action="reply", answers=[["yes"]])
    assert str(info.value) == (
        f"invalid input: Multiple pending questions found for session '{SID}': q1, q2. "
        "Please retry with question_request_id (returned by run)."
    )
    assert posts(fake) == []


async def test_reply_with_empty_answers_is_a_validation_error(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/question", [question_json("q1", SID)])
    with pytest.raises(InvalidInput) as info:
        await call(make(), "respond_question", session_id=SID, action="reply", answers=[])
    assert str(info.value) == "invalid input: answers is required when action=reply"
    assert posts(fake) == []


# ============================================================================ recovery


async def test_external_client_seam_supports_end_to_end_tool_calls(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.get("/command", commands_json("research", "plan", "build"))
    out = await call(make(), "list_commands")
    assert [c.name for c in out.commands] == ["research", "plan", "build"]


async def test_external_failure_is_sticky_and_keeps_the_held_snapshot_usable(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    health = fake.get(
        "/global/health", Seq({"healthy": True, "version": "test"}, Reply({"message": "server on fire"}, 500))
    )
    fake.get("/command", [{"name": "old-command", "template": "x", "hints": []}])
    orch = make()
    held = await orch.acquire()

    errors = []
    for _ in range(2):
        with pytest.raises(Internal) as info:
            await call(orch, "list_commands")
        errors.append(str(info.value))
    assert errors[0] == (
        f"internal error: External OpenCode server unavailable (base_url={fake.url}): "
        "/global/health probe failed: HTTP error 500: server on fire"
    )
    assert errors[1] == errors[0]
    assert health.count == 2  # sticky: the second failure does not even probe
    assert orch.service.handle.starts == 0  # an external server is never rebuilt
    # The snapshot a caller already holds keeps working and keeps its address.
    assert held.base_url == fake.url
    assert [c.name for c in await held.client.commands()] == ["old-command"]


# ============================================================================ event stream


async def test_streamed_permission_returns_with_the_partial_text_so_far(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    fake.sse()  # an open stream; events are pushed once the prompt arrives
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_busy(SID))

    def prompt(_request: Request) -> Reply:
        def part(pid: str, kind: str) -> dict[str, Any]:
            return {"type": "message.part.updated",
                    "properties": {"sessionID": SID, "part": {"id": pid, "sessionID": SID, "messageID": "a1",
                                                              "type": kind, "text": ""}}}  # fmt: skip

        def delta(pid: str, text: str) -> dict[str, Any]:
            return {"type": "message.part.delta",
                    "properties": {"sessionID": SID, "messageID": "a1", "partID": pid, "field": "text",
                                   "delta": text}}  # fmt: skip

        assistant = {"id": "a1", "sessionID": SID, "role": "assistant", "time": {"created": 3}}
        for event in (  # the order OpenCode 1.18.33 emits (docs/opencode-behaviour.md)
            {"type": "message.updated", "properties": {"sessionID": SID, "info": assistant}},
            part("p-think", "reasoning"),
            delta("p-think", "(thinking)"),
            part("p-text", "text"),
            delta("p-text", "I will "),
            delta("p-text", "edit the file"),
            {"type": "permission.asked", "properties": permission_json("per_9", SID, "edit", ["a.txt"])},
        ):
            fake.emit(event)
        return Reply(status=204)

    fake.post("/session/{id}/prompt_async", prompt)
    orch = make()
    await orch.acquire()
    assert await orch.service.wait_stream(2)

    out = await call(orch, "run", timeout=2, session_id=SID, message="edit a.txt")
    assert out.to_json() == {
        "session_id": SID,
        "status": "permission_required",
        "partial_response": "I will edit the file",  # reasoning deltas are kept out (port deviation)
        "permission_request_id": "per_9",
        "permission_type": "edit",
        "permission_patterns": ["a.txt"],
    }
    assert out.text().endswith("\n--- Partial Response ---\nI will edit the file")


async def test_streamed_session_error_fails_the_run(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    fake.sse()
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_busy(SID))
    error = {"name": "APIError", "data": {"message": "provider down"}}

    def prompt(_request: Request) -> Reply:
        fake.emit({"type": "session.error", "properties": {"sessionID": SID, "error": error}})
        return Reply(status=204)

    fake.post("/session/{id}/prompt_async", prompt)
    orch = make()
    await orch.acquire()
    assert await orch.service.wait_stream(2)
    with pytest.raises(Internal) as info:
        await call(orch, "run", timeout=2, session_id=SID, message="hi")
    assert (
        str(info.value) == 'internal error: Session error: {"name": "APIError", "data": {"message": "provider down"}}'
    )


async def test_streamed_stale_idle_does_not_end_a_new_turn(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # Port deviation (run.py docstring): `session.idle` is gated like a polled idle, so
    # an idle that ends the *previous* turn, arriving right after the prompt, is not the answer.
    fake.sse()
    mount_session(fake)
    no_requests(fake)
    status = fake.get(
        "/session/status",
        # pool resync, preflight, first poll (idle within the grace), busy, idle
        Seq(status_idle(), status_idle(), status_idle(), status_busy(SID), status_idle()),
    )
    fake.get(
        "/session/{id}/message",
        # Until the turn ran, the transcript holds the previous turn's reply: not this run's answer.
        SwitchAfter(status, 5, message_list(SID, "PREVIOUS_TURN"), answered(fake, SID, "THIS_TURN")),
    )

    delivered: list[int] = []

    def prompt(_request: Request) -> Reply:
        delivered.append(fake.emit({"type": "session.idle", "properties": {"sessionID": SID}}))
        return Reply(status=204)

    fake.post("/session/{id}/prompt_async", prompt)
    orch = make(idle_grace_ms=5000)
    await orch.acquire()
    assert await orch.service.wait_stream(2)
    await fake.wait_for("GET", "/session/status", 1)  # the pool's resync is done with it

    out = await call(orch, "run", timeout=5, session_id=SID, message="next step")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "THIS_TURN"}
    assert delivered == [1]  # the stale idle did reach the open stream


# ============================================================================ the turn's own answer


async def test_an_idle_session_before_the_turn_starts_does_not_end_a_prompt(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # A loaded OpenCode leaves a new prompt's session idle for seconds before it marks it busy.
    # However long that lasts (here: longer than the idle grace, which is 0), "idle" is not the
    # end of the turn while the transcript holds no answer to the prompt.
    mount_session(fake)
    no_requests(fake)
    status = fake.get(
        "/session/status", Seq(status_idle(), status_idle(), status_idle(), status_busy(SID), status_idle())
    )
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    messages = fake.get(
        "/session/{id}/message", SwitchAfter(status, 4, answered(fake, SID), answered(fake, SID, "LATE_ANSWER"))
    )
    orch = make(idle_grace_ms=0)

    out = await call(orch, "run", timeout=6, session_id=SID, message="work")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "LATE_ANSWER"}
    assert messages.count >= 2  # read while idle and unanswered (not the end), then once answered


async def test_a_turn_that_ends_without_a_reply_completes_with_a_warning_not_silently(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # OpenCode worked on the prompt (busy), then went idle with no reply to it (aborted before
    # the model answered). Not an endless wait, and not a silent empty "completed" either.
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", Seq(status_idle(), status_busy(SID), status_idle()))
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    fake.get("/session/{id}/message", answered(fake, SID))
    orch = make()

    out = await call(orch, "run", timeout=5, session_id=SID, message="work")
    [message_id] = [r.json["messageID"] for r in fake.calls("POST", f"/session/{SID}/prompt_async")]
    assert out.to_json() == {
        "session_id": SID,
        "status": "completed",
        "warnings": [
            f"OpenCode ended the turn without a reply to this run's message ({message_id}): it was aborted or "
            f"failed before the model answered. Send the message again with run(session_id='{SID}', message=...) "
            "to retry."
        ],
    }


async def test_an_abort_written_after_the_idle_is_reported_as_the_abort(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # OpenCode 1.18.33 aborts a model request in flight by marking the session idle first and
    # writing MessageAbortedError into the reply a moment later (seconds under load). A run that
    # sees the idle while the reply is still open must not call it a turn without a reply: it
    # waits for the reply to settle and reports the abort. (The real abort, with its
    # session.error event: tests/test_integration_real.py::test_aborting_before_the_first_token_ends_the_run.)
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", Seq(status_idle(), status_busy(SID), status_idle()))
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    aborted = {"name": "MessageAbortedError", "data": {"message": "Aborted"}}
    reads = 0

    def transcript(_request: Request) -> list[dict[str, Any]]:
        nonlocal reads
        reads += 1
        [prompt] = fake.calls("POST", f"/session/{SID}/prompt_async")
        reply = assistant_message(SID, mid="a-reply", created=11)
        reply["info"]["parentID"] = prompt.json["messageID"]
        if reads > 2:  # the abort is written after the idle was seen and the transcript read twice
            reply["info"]["time"]["completed"] = 12
            reply["info"]["error"] = aborted
        return [user_message(SID, mid=prompt.json["messageID"], created=10), reply]

    fake.get("/session/{id}/message", transcript)
    orch = make()

    with pytest.raises(Internal) as info:
        await call(orch, "run", timeout=8, session_id=SID, message="work")
    assert str(info.value) == (
        'internal error: Session error: {"name": "MessageAbortedError", "data": {"message": "Aborted"}}'
    )
    assert reads > 2


async def test_the_answer_on_the_stream_is_the_reply_to_this_prompt(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    # The previous turn's reply finishing (and its idle) right after the prompt is not the
    # answer; the reply that names this prompt's message as its parent is, straight from the
    # live stream, without reading the transcript.
    fake.sse()
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_busy(SID))
    messages = fake.get("/session/{id}/message", message_list(SID, "PREVIOUS_TURN"))

    def info(mid: str, role: str, parent: str | None, created: int, completed: int | None = None) -> dict[str, Any]:
        time = {"created": created} | ({"completed": completed} if completed else {})
        body: dict[str, Any] = {"id": mid, "sessionID": SID, "role": role, "time": time}
        return body | ({"parentID": parent} if parent else {})

    def updated(body: dict[str, Any]) -> dict[str, Any]:
        return {"type": "message.updated", "properties": {"sessionID": SID, "info": body}}

    def text(mid: str, words: list[str]) -> list[dict[str, Any]]:
        part = {"id": f"{mid}-text", "sessionID": SID, "messageID": mid, "type": "text", "text": ""}
        return [{"type": "message.part.updated", "properties": {"sessionID": SID, "part": part}}] + [
            {
                "type": "message.part.delta",
                "properties": {
                    "sessionID": SID,
                    "messageID": mid,
                    "partID": f"{mid}-text",
                    "field": "text",
                    "delta": word,
                },
            }
            for word in words
        ]

    def prompt(request: Request) -> Reply:
        ours = request.json["messageID"]
        idle = {"type": "session.idle", "properties": {"sessionID": SID}}
        for event in (
            updated(info("msg_old_answer", "assistant", "msg_old_prompt", 1)),
            *text("msg_old_answer", ["PREVIOUS_", "TURN"]),
            updated(info("msg_old_answer", "assistant", "msg_old_prompt", 1, completed=2)),
            idle,
            updated(info(ours, "user", None, 5)),
            updated(info("msg_step", "assistant", ours, 6)),
            updated(info("msg_step", "assistant", ours, 6, completed=7)),  # a tool step: more to come
            updated(info("msg_answer", "assistant", ours, 8)),
            *text("msg_answer", ["THIS_", "TURN"]),
            updated(info("msg_answer", "assistant", ours, 8, completed=9)),
            idle,
        ):
            fake.emit(event)
        return Reply(status=204)

    fake.post("/session/{id}/prompt_async", prompt)
    orch = make(idle_grace_ms=0)
    await orch.acquire()
    assert await orch.service.wait_stream(2)

    out = await call(orch, "run", timeout=3, session_id=SID, message="next step")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "THIS_TURN"}
    assert messages.count == 0


async def test_concurrent_runs_share_the_rest_safety_net(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    # Every waiting run used to poll permissions, questions and statuses once a second on its
    # own; the rounds are shared now, so the requests do not grow with the number of runs.
    runs = 20
    sessions = [f"ses_load{i}" for i in range(runs)]
    fake.get("/session/{id}", lambda request: session_json(request.params["id"]))
    no_requests(fake)
    loop = asyncio.get_running_loop()
    busy_until = loop.time() + 3.5  # every run waits through a few rounds

    def statuses(_request: Request) -> dict[str, Any]:
        return {sid: {"type": "busy"} for sid in sessions} if loop.time() < busy_until else status_idle()

    fake.get("/session/status", statuses)
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    for sid in sessions:
        fake.get(f"/session/{sid}/message", answered(fake, sid, f"answer {sid}"))
    orch = make()

    outs = await asyncio.gather(*(call(orch, "run", timeout=10, session_id=sid, message="go") for sid in sessions))
    assert [out.response for out in outs] == [f"answer {sid}" for sid in sessions]
    # Per run: its preflight's list, and at most one round of its own right after the dispatch;
    # the rounds after that are shared. Polling alone, each run would have listed 4+ times.
    rounds = fake.count("GET", "/question") - runs
    assert rounds < 2 * runs, rounds


# ============================================================================ timeouts


async def test_inactivity_timeout_states_the_configured_duration(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())  # the session never starts...
    command = fake.post("/session/{id}/command", Reply(stall=True))  # ...and the command POST never returns
    orch = make(agentic_toml="[orchestrator]\ninactivity_timeout_secs = 1\n")

    with pytest.raises(Internal) as info:
        await call(orch, "run", timeout=5, session_id=SID, command="research", message="x")
    assert str(info.value) == (
        f"internal error: Session idle timeout: no activity for 1 second (session_id={SID}). "
        "The session may still be running; use run(session_id=...) to check status."
    )
    assert command.count == 1


async def test_session_deadline_states_the_configured_duration(
    fake: FakeOpenCode, make: Callable[..., Orchestrator]
) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_busy(SID))  # busy forever: activity, but no end
    fake.post("/session/{id}/prompt_async", Reply(status=204))
    orch = make(agentic_toml="[orchestrator]\nsession_deadline_secs = 1\n")

    with pytest.raises(Internal) as info:
        await call(orch, "run", timeout=5, session_id=SID, message="work forever")
    assert str(info.value) == (
        "internal error: Session execution timed out after 1 second. "
        "The session may still be running; use run with the session_id to check status."
    )


async def test_zero_timeouts_mean_no_limit(fake: FakeOpenCode, make: Callable[..., Orchestrator]) -> None:
    mount_session(fake)
    no_requests(fake)
    fake.get("/session/status", status_idle())
    fake.post("/session/{id}/command", Reply({"info": {}, "parts": []}, delay=1.5))  # 1.5 s without activity
    fake.get("/session/{id}/message", message_list(SID, "DONE_AFTER_QUIET"))
    orch = make(
        idle_grace_ms=0, agentic_toml="[orchestrator]\ninactivity_timeout_secs = 0\nsession_deadline_secs = 0\n"
    )
    out = await call(orch, "run", timeout=5, session_id=SID, command="research", message="x")
    assert out.to_json() == {"session_id": SID, "status": "completed", "response": "DONE_AFTER_QUIET"}
