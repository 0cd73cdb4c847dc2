"""The live pool: the reducer on its own, then the whole service on the real OpenCode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest, Session, SessionStatus, parse_event
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.pool.state import Changes, Pool, Status


def ev(kind: str, **props: Any) -> Any:
    return parse_event(json.dumps({"type": kind, "properties": props}))


def session(sid: str, updated: int = 1) -> dict[str, Any]:
    return {"id": sid, "title": f"title {sid}", "directory": "/p", "time": {"created": 1, "updated": updated}}


# ------------------------------------------------------------------------------------- reducer


def test_status_is_unknown_until_observed_then_follows_events() -> None:
    pool = Pool()
    pool.apply(None, ev("session.created", sessionID="ses_a", info=session("ses_a")))
    assert pool.sessions["ses_a"].status is Status.UNKNOWN
    pool.apply(None, ev("session.status", sessionID="ses_a", status={"type": "busy"}))
    assert pool.sessions["ses_a"].status is Status.BUSY
    pool.apply(None, ev("session.status", sessionID="ses_a", status={"type": "retry", "attempt": 2, "message": "m"}))
    view = pool.sessions["ses_a"]
    assert view.status is Status.RETRY and view.retry is not None and view.retry.attempt == 2
    pool.apply(None, ev("session.idle", sessionID="ses_a"))
    assert pool.sessions["ses_a"].status is Status.IDLE and pool.sessions["ses_a"].retry is None


def test_streamed_text_follows_the_latest_assistant_message_and_skips_reasoning() -> None:
    pool = Pool()
    sid = "ses_t"
    pool.apply(None, ev("message.updated", sessionID=sid, info={"id": "msg_1", "sessionID": sid, "role": "assistant"}))
    part = {"id": "prt_r", "messageID": "msg_1", "sessionID": sid, "type": "reasoning", "text": ""}
    pool.apply(None, ev("message.part.updated", sessionID=sid, part=part))
    pool.apply(
        None, ev("message.part.delta", sessionID=sid, messageID="msg_1", partID="prt_r", field="text", delta="hmm")
    )
    text_part = {"id": "prt_x", "messageID": "msg_1", "sessionID": sid, "type": "text", "text": ""}
    pool.apply(None, ev("message.part.updated", sessionID=sid, part=text_part))
    for chunk in ("hel", "lo ", "world"):
        pool.apply(
            None, ev("message.part.delta", sessionID=sid, messageID="msg_1", partID="prt_x", field="text", delta=chunk)
        )
    assert pool.sessions[sid].text == "hello world"
    # The final part update carries the whole text; it replaces the deltas.
    pool.apply(None, ev("message.part.updated", sessionID=sid, part={**text_part, "text": "hello world!"}))
    assert pool.sessions[sid].text == "hello world!"
    # A new assistant message starts a new text.
    pool.apply(None, ev("message.updated", sessionID=sid, info={"id": "msg_2", "sessionID": sid, "role": "assistant"}))
    pool.apply(
        None, ev("message.part.delta", sessionID=sid, messageID="msg_2", partID="prt_y", field="text", delta="2")
    )
    assert pool.sessions[sid].text == "2"


def test_tool_calls_keep_state_and_times() -> None:
    pool = Pool()
    sid = "ses_tool"
    base = {"id": "prt_1", "messageID": "msg_1", "sessionID": sid, "type": "tool", "callID": "call_1", "tool": "bash"}
    pool.apply(None, ev("message.part.updated", sessionID=sid, part={**base, "state": {"status": "pending"}}))
    running = {"status": "running", "input": {"command": "ls"}, "time": {"start": 10}}
    pool.apply(None, ev("message.part.updated", sessionID=sid, part={**base, "state": running}))
    done = {"status": "completed", "input": {"command": "ls"}, "title": "ls", "time": {"start": 10, "end": 25}}
    pool.apply(None, ev("message.part.updated", sessionID=sid, part={**base, "state": done}))
    call = pool.sessions[sid].tool_calls["call_1"]
    assert (call.tool, call.status, call.title, call.started_at, call.completed_at) == (
        "bash",
        "completed",
        "ls",
        10,
        25,
    )
    assert call.input == {"command": "ls"}


def test_answered_request_is_not_resurrected_by_a_stale_resync() -> None:
    pool = Pool()
    perm = {"id": "per_1", "sessionID": "ses_a", "permission": "bash", "patterns": ["ls"], "always": [], "metadata": {}}
    pool.apply(None, ev("permission.asked", **perm))
    assert list(pool.permissions) == ["per_1"]
    pool.apply(None, ev("permission.replied", sessionID="ses_a", requestID="per_1", reply="once"))
    assert pool.permissions == {}
    # A resync whose GET /permission was answered before the reply still lists it.
    pool.load_requests([PermissionRequest.model_validate(perm)], [])
    assert pool.permissions == {}
    question = {"id": "que_1", "sessionID": "ses_a", "questions": [{"question": "q?", "header": "", "options": []}]}
    pool.load_requests([], [QuestionRequest.model_validate(question)])
    assert list(pool.questions) == ["que_1"] and pool.needs_input("ses_a")
    pool.apply(None, ev("question.rejected", sessionID="ses_a", requestID="que_1"))
    assert not pool.needs_input("ses_a")


def test_a_request_asked_while_the_snapshot_was_on_its_way_stays_in_the_inbox() -> None:
    pool = Pool()
    perm = {"id": "per_1", "sessionID": "ses_a", "permission": "bash", "patterns": ["ls"], "always": [], "metadata": {}}
    asked = time.monotonic()
    pool.apply(None, ev("permission.asked", **perm))  # announced after GET /permission went out
    pool.load_requests([], [], asked=asked)
    assert list(pool.permissions) == ["per_1"]  # kept: the snapshot is older than the request
    pool.load_requests([], [], asked=time.monotonic())  # a snapshot asked later is the truth
    assert pool.permissions == {}


def test_resync_marks_absent_sessions_idle_and_forgets_deleted_ones() -> None:
    pool = Pool()
    pool.load_sessions([Session.model_validate(session("ses_a")), Session.model_validate(session("ses_b"))])
    pool.load_statuses({"ses_a": SessionStatus(type="busy")})
    assert pool.sessions["ses_a"].status is Status.BUSY and pool.sessions["ses_b"].status is Status.IDLE
    pool.load_sessions([Session.model_validate(session("ses_a", updated=2))], complete=True)
    assert set(pool.sessions) == {"ses_a"}
    assert pool.sessions["ses_a"].info is not None and pool.sessions["ses_a"].info.time.updated == 2


def test_a_session_the_stream_brought_after_the_list_was_asked_for_is_not_forgotten() -> None:
    pool = Pool()
    pool.load_sessions([Session.model_validate(session("ses_old"))])
    asked = time.monotonic()
    # While the list is on its way, the stream announces a new session: the list cannot have it.
    pool.apply(None, ev("session.created", info=session("ses_new")))
    pool.load_sessions([], complete=True, asked=asked)
    assert set(pool.sessions) == {"ses_new"}  # the old one is gone; the newer one stays


def test_a_session_deleted_after_the_list_was_asked_for_stays_gone() -> None:
    pool = Pool()
    pool.load_sessions([Session.model_validate(session("ses_a")), Session.model_validate(session("ses_b"))])
    asked = time.monotonic()
    # While the list is on its way (it still has ses_b), the stream says ses_b was deleted.
    pool.apply(None, ev("session.deleted", info=session("ses_b")))
    listed = [Session.model_validate(session("ses_a")), Session.model_validate(session("ses_b"))]
    pool.load_sessions(listed, complete=True, asked=asked)
    assert set(pool.sessions) == {"ses_a"}
    pool.load_sessions(listed, complete=True, asked=time.monotonic())  # a list asked later is the truth
    assert set(pool.sessions) == {"ses_a", "ses_b"}


async def test_changes_are_coalesced_per_loop_turn() -> None:
    pool = Pool()
    seen: list[Changes] = []
    pool.subscribe(seen.append)
    for i in range(1000):
        pool.apply(None, ev("message.part.delta", sessionID=f"ses_{i % 3}", partID="p", field="text", delta="x"))
    assert seen == []  # nothing delivered synchronously
    await asyncio.sleep(0)
    assert len(seen) == 1
    assert seen[0].sessions == {"ses_0", "ses_1", "ses_2"}


async def test_watch_receives_only_its_session_in_order() -> None:
    pool = Pool()
    with pool.watch("ses_a") as watch:
        pool.apply(None, ev("session.status", sessionID="ses_b", status={"type": "busy"}))
        pool.apply(None, ev("session.status", sessionID="ses_a", status={"type": "busy"}))
        pool.apply(None, ev("session.idle", sessionID="ses_a"))
        first, second = await watch.get(), await watch.get()
        assert (first.type, second.type) == ("session.status", "session.idle")
        assert watch.queue.empty()
    pool.apply(None, ev("session.idle", sessionID="ses_a"))
    assert watch.queue.empty()  # closed watches get nothing


def test_unknown_and_malformed_events_are_kept_not_fatal() -> None:
    pool = Pool()
    pool.apply(None, ev("todo.updated", sessionID="ses_a", todos=[]))
    pool.apply(None, ev("permission.asked", id=7))  # wrong shape for a known type
    assert pool.events_seen == 2 and pool.permissions == {}


# --------------------------------------------------------------------------- on the real server


@pytest.fixture
async def service(project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]) -> Any:
    svc = PoolService(ServerSpec(cwd=project_dir, config_content=model_config(), env=opencode_env))
    yield svc
    await svc.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.real_opencode
@pytest.mark.usefixtures("both_backends")
async def test_pool_follows_a_real_session_live(service: PoolService, tmp_path: Path) -> None:
    snapshot = await service.acquire()
    assert await service.wait_stream(10)
    created = await snapshot.client.create_session()
    await snapshot.client.prompt_async(created.id, "STREAM live text from the scripted model")
    await wait_until(lambda: service.pool.sessions.get(created.id) is not None)
    await wait_until(lambda: service.pool.sessions[created.id].status is Status.BUSY)
    await wait_until(lambda: service.pool.sessions[created.id].status is Status.IDLE)
    assert service.pool.sessions[created.id].text == "live text from the scripted model"
    assert service.pool.sessions[created.id].title  # the title generator answered

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("TOKEN")
    await snapshot.client.prompt_async(created.id, f"READ {outside / 'f.txt'}")
    await wait_until(lambda: service.pool.needs_input(created.id))
    (perm,) = service.pool.permissions.values()
    assert perm.permission == "external_directory" and perm.sessionID == created.id
    await snapshot.client.reply_permission(perm.id, "once")
    await wait_until(lambda: not service.pool.needs_input(created.id))
    await wait_until(lambda: service.pool.sessions[created.id].status is Status.IDLE)
    calls = list(service.pool.sessions[created.id].tool_calls.values())
    assert calls and calls[-1].tool == "read" and calls[-1].status == "completed"
    # `run` answers from the pool when it saw the whole final message: it must be exactly what
    # the REST extraction gives.
    from orchestrator_tui.orchestrator.transcript import extract_response

    await wait_until(lambda: service.pool.final_text(created.id)[0])
    known, text = service.pool.final_text(created.id)
    assert known and text == extract_response(await snapshot.client.messages(created.id)) == "TOKEN"


@pytest.mark.real_opencode
@pytest.mark.usefixtures("both_backends")
async def test_reconnect_resyncs_pending_requests(service: PoolService) -> None:
    """Nothing is replayed after a reconnect: the resync must find what is pending."""
    snapshot = await service.acquire()
    assert await service.wait_stream(10)
    sid = (await snapshot.client.create_session()).id
    await snapshot.client.prompt_async(sid, "ASK")
    await wait_until(lambda: service.pool.needs_input(sid))
    resyncs = service.pool.resyncs
    # Forget what the stream told us; only the resync on reconnect can bring it back.
    service.pool.questions.clear()
    assert not service.pool.needs_input(sid)
    await service.primary._attach(snapshot)  # a new stream, as after any cut; it resyncs on connect
    await wait_until(lambda: service.pool.needs_input(sid))
    assert service.pool.resyncs == resyncs + 1


@pytest.mark.real_opencode
async def test_a_resync_of_every_directory_forgets_what_was_deleted_unseen_and_keeps_the_rest(
    project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str], tmp_path: Path
) -> None:
    """The dashboard's resync (every directory): a session deleted while the stream was down is
    forgotten; the others, in any directory, stay, with their state."""
    other = tmp_path / "other-project"
    other.mkdir()
    service = PoolService(
        ServerSpec(cwd=project_dir, config_content=model_config(), env=opencode_env, every_directory=True)
    )
    try:
        snapshot = await service.acquire()
        await service.wait_synced(10)
        here = await snapshot.client.create_session()
        there = await snapshot.client.at(str(other)).create_session()
        doomed = await snapshot.client.at(str(other)).create_session()
        await wait_until(lambda: {here.id, there.id, doomed.id} <= set(service.pool.sessions))
        await snapshot.client.at(str(other)).prompt_async(there.id, "ASK")
        await wait_until(lambda: service.pool.needs_input(there.id))

        link = service.primary
        assert link._stream is not None
        await link._stream.stop()  # the deletion happens while nobody listens
        await snapshot.client.at(str(other)).delete_session(doomed.id)
        resyncs = service.pool.resyncs
        await link._attach(snapshot)  # a new stream, as after any cut; it resyncs on connect
        await wait_until(lambda: service.pool.resyncs > resyncs)
        assert doomed.id not in service.pool.sessions
        assert {here.id, there.id} <= set(service.pool.sessions)
        assert service.pool.needs_input(there.id)  # its question, read from its own directory
        assert service.pool.sessions[there.id].directory == str(other)
    finally:
        await service.close()


@pytest.mark.real_opencode
async def test_pool_follows_a_rebuilt_server(service: PoolService) -> None:
    snapshot = await service.acquire()
    assert await service.wait_stream(10)
    assert snapshot.managed is not None
    await snapshot.managed.stop()
    rebuilt = await service.acquire()
    assert rebuilt is not snapshot
    assert await service.wait_stream(10)
    sid = (await rebuilt.client.create_session()).id
    await rebuilt.client.prompt_async(sid, "Say exactly 'again'")
    await wait_until(lambda: sid in service.pool.sessions and service.pool.sessions[sid].text == "again")


@pytest.mark.real_opencode
@pytest.mark.usefixtures("both_backends")
async def test_attach_to_a_password_protected_server(
    project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]
) -> None:
    from orchestrator_tui.opencode import binary
    from orchestrator_tui.opencode.process import ManagedServer

    launcher = binary.resolve_launcher(project_dir, opencode_env)
    server = await ManagedServer.start(
        launcher=launcher, cwd=project_dir, env=opencode_env, config_content=model_config()
    )
    try:
        good = PoolService(ServerSpec(cwd=project_dir, attach_url=server.base_url, password=server.password))
        try:
            snapshot = await good.acquire()
            assert snapshot.mode == "external" and snapshot.version == "1.18.33"
            assert isinstance(await snapshot.client.commands(), list)
        finally:
            await good.close()
        bad = PoolService(ServerSpec(cwd=project_dir, attach_url=server.base_url, password="wrong"))
        with pytest.raises(ServerUnavailable) as info:
            await bad.acquire()
        text = str(info.value)
        assert "401" in text and "OPENCODE_SERVER_PASSWORD" in text and server.base_url in text
        await bad.close()
        nowhere = PoolService(ServerSpec(cwd=project_dir, attach_url="http://127.0.0.1:9"))
        with pytest.raises(ServerUnavailable) as info:
            await nowhere.acquire()
        assert "External OpenCode server unavailable (base_url=http://127.0.0.1:9)" in str(info.value)
        await nowhere.close()
    finally:
        await server.stop()


def test_registry_is_owner_only_and_records(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "pool" / "registry.sqlite3")
    registry.record_launch("ses_1", "agent", "worker-1", "claude-code", "2.0")
    registry.record_decision(
        request_id="per_1", session_id="ses_1", kind="permission", decision="once", decided_by="agent", channel="mcp"
    )
    assert registry.launches(["ses_1", "ses_2"])["ses_1"].client_name == "claude-code"
    (decision,) = registry.decisions(request_id="per_1")
    assert (decision.decision, decision.decided_by, decision.channel) == ("once", "agent", "mcp")
    assert (tmp_path / "pool" / "registry.sqlite3").stat().st_mode & 0o777 == 0o600
    registry.close()


def test_client_error_texts_follow_the_reference() -> None:
    from orchestrator_tui.opencode.client import error_message_from_body

    assert error_message_from_body(404, '{"name":"NotFoundError","data":{"message":"Session not found: x"}}') == (
        "NotFoundError: Session not found: x"
    )
    assert error_message_from_body(404, '{"_tag":"X","message":"Permission request not found: per_1"}') == (
        "Permission request not found: per_1"
    )
    body = '{"success":false,"error":[{"path":["a","b"],"message":"bad"},{"message":"worse"}]}'
    assert error_message_from_body(400, body) == "a.b: bad; worse"
    assert error_message_from_body(500, "") == "HTTP 500"
    assert error_message_from_body(500, "x" * 2000) == "x" * 1024 + "…"
