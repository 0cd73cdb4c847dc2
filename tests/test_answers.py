"""The one answer path: every way an answer can fail, as each caller sees it.

The dashboard (:class:`PoolActions`), the agent's tools (:class:`Orchestrator`) and the rule
engine (:func:`apply_rules`) all answer through :func:`orchestrator_tui.pool.answers.answer`,
which returns a typed outcome; each caller turns it into its own words. Here each failure is
produced once for each caller:

* a lost race (two answerers at once), a request gone (answered or rejected outside the pool:
  OpenCode's real 404) and a registry error (another process holds the registry's write lock)
  against the real OpenCode 1.18.33;
* an OpenCode error (HTTP 500 on the reply) over the fake OpenCode: the real server does not
  fail that way on demand.

The texts the agent gets are the tools' contract; the dashboard's carry the outcome they came
from, so it never reads an error's text to learn what happened.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from fake_opencode import FakeOpenCode, Reply, build_orchestrator, permission_json

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient
from orchestrator_tui.opencode.models import PermissionRequest
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import Internal, InvalidInput
from orchestrator_tui.orchestrator.tools import ClientInfo, Orchestrator
from orchestrator_tui.pool.actions import ActionError, PoolActions
from orchestrator_tui.pool.answers import ANSWER_AGAIN, AlreadyAnswered, Failed, Gone
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.rules import apply_rules

SLOW = 60.0
RULES_LOG = "orchestrator_tui.pool.rules"


def respond(sid: str, rid: str, reply: str = "once") -> t.RespondPermissionInput:
    return t.RespondPermissionInput(session_id=sid, permission_request_id=rid, reply=reply)  # type: ignore[arg-type]


async def dashboard_refusal(human: PoolActions, rid: str) -> ActionError:
    """The dashboard's answer to ``rid``, which must not go through."""
    with pytest.raises(ActionError) as info:
        await human.reply_permission(rid, "once")
    return info.value


def rule_log(caplog: pytest.LogCaptureFixture, rid: str) -> str:
    (record,) = [r for r in caplog.records if r.name == RULES_LOG and rid in r.getMessage()]
    return f"{record.levelname} {record.getMessage()}"


# ---------------------------------------------------------------------------------------------
# real OpenCode: a lost race, a request gone, a locked registry
# ---------------------------------------------------------------------------------------------


async def pending_bash(orch: Orchestrator, human: PoolActions, command: str) -> PermissionRequest:
    """A session the human starts, waiting for its bash permission."""
    sid = (await human.new_session(f"BASH {command}")).id
    deadline = time.monotonic() + SLOW
    while True:
        request = next((p for p in orch.service.pool.permissions.values() if p.sessionID == sid), None)
        if request is not None:
            return request
        assert time.monotonic() < deadline, "timed out waiting for the bash permission"
        await asyncio.sleep(0.02)


@pytest.fixture
async def pool(make_orchestrator: Callable[..., Orchestrator]) -> tuple[Orchestrator, PoolActions, Registry]:
    """The agent and the human on one real server and one registry (bash asks)."""
    orch = make_orchestrator(permission={"bash": "ask"})
    orch.client_info = ClientInfo(name="test-agent")
    assert orch.registry is not None
    return orch, PoolActions(orch.service, orch.registry), orch.registry


@pytest.mark.real_opencode
async def test_a_lost_race_is_already_answered_for_every_caller(
    pool: tuple[Orchestrator, PoolActions, Registry], caplog: pytest.LogCaptureFixture
) -> None:
    """Two answerers at once, three times over; each caller loses once, to a real answer."""
    orch, human, registry = pool
    caplog.set_level(logging.DEBUG, logger=RULES_LOG)
    rule = registry.add_rule("bash", "echo *", "once", "human")
    first = await pending_bash(orch, human, "echo first")
    second = await pending_bash(orch, human, "echo second")
    third = await pending_bash(orch, human, "echo third")

    # The agent against the human: the human's press claims the request in its first step
    # (its reply is on its way), the agent's call a moment later finds the claim.
    pressed = asyncio.create_task(human.reply_permission(first.id, "once"))
    await asyncio.sleep(0)
    with pytest.raises(InvalidInput) as lost:
        await orch.respond_permission(respond(first.sessionID, first.id))
    await pressed
    won = registry.claim_of(first.id)
    assert won is not None and (won.decided_by, won.channel) == ("human", "dashboard")
    assert str(lost.value) == (
        f"invalid input: Permission request '{first.id}' was {won.describe()}. "
        f"Call run with session_id='{first.sessionID}' to follow the session."
    )

    # The human against a rule engine that is answering the same request right now.
    applying = asyncio.create_task(apply_rules(orch.service, registry, [second], applied_by="mcp"))
    await asyncio.sleep(0)
    refusal = await dashboard_refusal(human, second.id)
    assert [a.request_id for a in await applying] == [second.id]
    assert isinstance(refusal.outcome, AlreadyAnswered)
    won = refusal.outcome.claim
    assert (won.decided_by, won.channel, won.client_name, won.decision) == (f"rule #{rule.id}", "rule", "mcp", "once")
    assert str(refusal) == f"This request was {won.describe()}."

    # A rule engine that still sees the request pending, against the agent who answered it.
    answering = asyncio.create_task(orch.respond_permission(respond(third.sessionID, third.id)))
    deadline = time.monotonic() + SLOW
    while (won := registry.claim_of(third.id)) is None:
        assert time.monotonic() < deadline, "timed out waiting for the agent's claim"
        await asyncio.sleep(0.01)
    assert await apply_rules(orch.service, registry, [third], applied_by="dashboard") == []
    assert rule_log(caplog, third.id) == f"DEBUG rule #{rule.id}: {third.id} was {won.describe()}"
    result = await asyncio.wait_for(answering, SLOW)
    assert result.output.response == "Command output:\nthird"

    # Each request got one answer, recorded once, by its winner.
    decisions = [d for r in (first, second, third) for d in registry.decisions(request_id=r.id)]
    winners = [(d.decided_by, d.client_name) for d in decisions]
    assert winners == [("human", human.client_name), (f"rule #{rule.id}", "mcp"), ("agent", "test-agent")]


@pytest.mark.real_opencode
async def test_a_request_answered_outside_the_pool_is_gone_for_every_caller(
    pool: tuple[Orchestrator, PoolActions, Registry],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orch, human, registry = pool
    caplog.set_level(logging.DEBUG, logger=RULES_LOG)
    first = await pending_bash(orch, human, "echo gone")
    second = await pending_bash(orch, human, "echo gone-too")
    client = (await orch.service.acquire()).client
    # Answered straight to OpenCode (its own TUI, another tool): no claim, no decision of ours.
    await client.reply_permission(first.id, "once")

    # The dashboard: OpenCode's 404, and nothing left behind (no claim, no decision).
    refusal = await dashboard_refusal(human, first.id)
    assert isinstance(refusal.outcome, Gone) and refusal.outcome.lost is None
    assert isinstance(refusal.outcome.error, HttpStatusError) and refusal.outcome.error.status == 404
    assert str(refusal) == "This request was already answered elsewhere."
    assert registry.claim_of(first.id) is None and registry.decisions(request_id=first.id) == []

    # A rule engine that still had it pending.
    rule = registry.add_rule("bash", "echo *", "once", "human")
    assert await apply_rules(orch.service, registry, [first], applied_by="dashboard") == []
    assert rule_log(caplog, first.id) == f"INFO rule #{rule.id} did not answer {first.id}: no longer pending"
    assert registry.claim_of(first.id) is None and registry.decisions(request_id=first.id) == []
    assert registry.revoke_rule(rule.id)

    # The agent, naming a request that is not pending any more.
    with pytest.raises(InvalidInput) as gone:
        await orch.respond_permission(respond(first.sessionID, first.id))
    assert str(gone.value) == (
        f"invalid input: No pending permission found with id '{first.id}'. (session_id='{first.sessionID}')"
    )

    # The agent, whose reply finds it gone: answered outside the pool between the agent's look
    # at the pending requests and its reply. The 404 is OpenCode's; its text is the contract.
    original = OpenCodeClient.reply_permission

    async def answered_just_before(self: OpenCodeClient, request_id: str, *args: Any, **kwargs: Any) -> None:
        if request_id == second.id:
            await original(self, request_id, "once")
        await original(self, request_id, *args, **kwargs)

    monkeypatch.setattr(OpenCodeClient, "reply_permission", answered_just_before)
    # 0.7.10: a 404 on the reply is the agent's input gone stale, not an internal error.
    with pytest.raises(InvalidInput) as failed:
        await orch.respond_permission(respond(second.sessionID, second.id))
    assert str(failed.value) == (
        f"invalid input: Permission request '{second.id}' was not found or is no longer pending (HTTP 404). "
        f"It may be stale. Re-run orchestrator_run(session_id='{second.sessionID}') to get the latest "
        "permission_request_id and retry."
    )
    assert registry.claim_of(second.id) is None and registry.decisions(request_id=second.id) == []
    assert second.id not in orch.service.pool.permissions

    # A question rejected straight to OpenCode: the dashboard's answer gets OpenCode's 404, the
    # agent finds nothing pending.
    qsid = (await human.new_session("ASK")).id
    deadline = time.monotonic() + SLOW
    while (question := next((q for q in orch.service.pool.questions.values() if q.sessionID == qsid), None)) is None:
        assert time.monotonic() < deadline, "timed out waiting for the question"
        await asyncio.sleep(0.02)
    await client.reject_question(question.id)
    with pytest.raises(ActionError) as info:
        await human.reply_question(question.id, [["blue"]])
    assert isinstance(info.value.outcome, Gone) and isinstance(info.value.outcome.error, HttpStatusError)
    assert str(info.value) == "This question was already answered elsewhere."
    with pytest.raises(InvalidInput) as gone:
        await orch.respond_question(
            t.RespondQuestionInput(session_id=qsid, question_request_id=question.id, action="reply", answers=[["blue"]])
        )
    assert str(gone.value) == f"invalid input: No pending question found with id '{question.id}'. (session_id='{qsid}')"
    assert registry.claim_of(question.id) is None and registry.decisions(request_id=question.id) == []


@pytest.mark.real_opencode
async def test_a_locked_registry_fails_for_every_caller_before_anything_is_sent(
    pool: tuple[Orchestrator, PoolActions, Registry], caplog: pytest.LogCaptureFixture
) -> None:
    orch, human, registry = pool
    caplog.set_level(logging.DEBUG, logger=RULES_LOG)
    request = await pending_bash(orch, human, "echo locked")
    rid, sid = request.id, request.sessionID
    rule = registry.add_rule("bash", "echo *", "once", "human")

    # Another process holds the registry's write lock; SQLite gives up after its busy timeout
    # (shortened here from 10 s) with SQLITE_BUSY, "database is locked".
    other = sqlite3.connect(registry.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    registry._db.execute("PRAGMA busy_timeout = 100")
    fix = "wait for the other orchestrator-tui front end of this pool to finish, or stop it, then try again"
    try:
        # The dashboard: the problem and its fix.
        refusal = await dashboard_refusal(human, rid)
        assert isinstance(refusal.outcome, Failed) and refusal.outcome.cause == "registry"
        assert isinstance(refusal.outcome.error, sqlite3.OperationalError) and refusal.outcome.fix == fix
        assert str(refusal) == f"Could not claim the request in the pool registry (database is locked). Fix: {fix}."

        # The agent: the contract's text.
        with pytest.raises(Internal) as failed:
            await orch.respond_permission(respond(sid, rid))
        assert str(failed.value) == (
            f"internal error: Failed to claim request '{rid}' in the pool registry: database is locked"
        )

        # A rule: a warning with the fix; the engine goes on with the next request.
        assert await apply_rules(orch.service, registry, [request], applied_by="dashboard") == []
        assert rule_log(caplog, rid) == (
            f"WARNING rule #{rule.id} could not answer {rid} (registry): database is locked. Fix: {fix}"
        )
    finally:
        other.rollback()
        other.close()
        registry._db.execute("PRAGMA busy_timeout = 10000")

    # Without a claim nothing was sent: the request still waits, and the human can answer it.
    client = (await orch.service.acquire()).client
    assert rid in {p.id for p in await client.permissions()}
    assert registry.claim_of(rid) is None and registry.decisions(request_id=rid) == []
    await human.reply_permission(rid, "reject")
    (decision,) = registry.decisions(request_id=rid)
    assert (decision.decided_by, decision.decision) == ("human", "reject")


# ---------------------------------------------------------------------------------------------
# a fault: OpenCode answers HTTP 500
# ---------------------------------------------------------------------------------------------

SID = "ses_faults"
PID = "per_faults"
REQUEST = PermissionRequest(id=PID, sessionID=SID, permission="bash", patterns=["echo fault"])


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[tuple[FakeOpenCode, Orchestrator, PoolActions, Registry]]:
    """A fake OpenCode with one pending bash permission; the agent and the human share a registry."""
    async with FakeOpenCode() as fake:
        fake.get("/permission", [permission_json(PID, SID, "bash", ["echo fault"])])
        orch = build_orchestrator(fake, tmp_path)
        registry = Registry(tmp_path / "state" / "registry.sqlite3")
        orch.registry = registry
        orch.client_info = ClientInfo(name="test-agent")
        try:
            yield fake, orch, PoolActions(orch.service, registry), registry
        finally:
            await orch.close()
            registry.close()


async def test_an_opencode_error_fails_for_every_caller_and_leaves_the_request_open(
    faulty: tuple[FakeOpenCode, Orchestrator, PoolActions, Registry], caplog: pytest.LogCaptureFixture
) -> None:
    fake, orch, human, registry = faulty
    reply = fake.post(f"/permission/{PID}/reply", Reply({"message": "database on fire"}, status=500))
    caplog.set_level(logging.DEBUG, logger=RULES_LOG)

    # The dashboard: what OpenCode said, and what to do.
    refusal = await dashboard_refusal(human, PID)
    assert isinstance(refusal.outcome, Failed) and refusal.outcome.cause == "opencode"
    assert isinstance(refusal.outcome.error, HttpStatusError) and refusal.outcome.error.status == 500
    assert str(refusal) == f"OpenCode refused the reply: HTTP error 500: database on fire. Fix: {ANSWER_AGAIN}."

    # The agent: the contract's text.
    with pytest.raises(Internal) as failed:
        await orch.respond_permission(respond(SID, PID))
    assert str(failed.value) == "internal error: Failed to reply to permission: HTTP error 500: database on fire"

    # A rule: a warning with the problem and the fix; it tries again on its next pass.
    rule = registry.add_rule("bash", "*", "once", "human")
    assert await apply_rules(orch.service, registry, [REQUEST], applied_by="dashboard") == []
    assert rule_log(caplog, PID) == (
        f"WARNING rule #{rule.id} could not answer {PID} (opencode): HTTP error 500: database on fire. "
        f"Fix: {ANSWER_AGAIN}"
    )

    # Each tried once, and each gave its claim back: the request is still anyone's to answer.
    assert reply.count == 3
    assert registry.claim_of(PID) is None and registry.decisions(request_id=PID) == []
