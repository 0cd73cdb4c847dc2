"""The seed's ``tests/integration.rs`` scenarios, against the real OpenCode 1.18.33.

The only stand-in is the model (the package's scripted model server). Where the seed asks a
real LLM for something ("Say exactly 'hello'", "read this file and reply with its contents"),
the scripted model does exactly that, so the assertions can be strict.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.opencode import binary
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import Internal, ToolError

pytestmark = pytest.mark.real_opencode

#: The seed's permission fixture (`opencode.permission.config.json`).
PERMISSION_CONFIG = {"permission": {"question": "allow", "read": "allow", "edit": "ask", "bash": "ask"}}


def external_read_prompt(path: Path) -> str:
    return (
        f'There is a text file at "{path}".\n'
        "The file contains a unique token.\n"
        "Use the `read` tool to read it, then reply with the exact file contents and nothing else.\n"
        "Do not guess the contents."
    )


@pytest.fixture
def token_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    # Outside the project directory, so reading it asks for `external_directory`.
    folder = tmp_path_factory.mktemp("outside")
    token = f"opencode-orchestrator-mcp permission token: {time.time_ns()}"
    path = folder / "orch-perm-test.txt"
    path.write_text(token)
    return path, token


async def new_session(orch: Any) -> str:
    snapshot = await orch.acquire()
    return (await snapshot.client.create_session()).id


async def test_unknown_command_errors_fast(orchestrator: Any) -> None:
    # "Fast": an error, not a wait for the inactivity timeout (300 s); how fast is benchmarks' job.
    sid = await new_session(orchestrator)
    with pytest.raises(ToolError) as info:
        await asyncio.wait_for(
            orchestrator.run(
                t.RunInput(session_id=sid, command="___definitely_not_a_real_command___", message="test argument")
            ),
            60,
        )
    text = str(info.value)
    assert "Command not found" in text or "___definitely_not_a_real_command___" in text, text


@pytest.mark.usefixtures("both_backends")
async def test_prompt_completes_and_extracts_response(orchestrator: Any) -> None:
    sid = await new_session(orchestrator)
    result = await asyncio.wait_for(
        orchestrator.run(t.RunInput(session_id=sid, message="Say exactly 'hello' and nothing else.")), 180
    )
    out = result.output
    assert out.session_id == sid
    assert out.status == t.RunStatus.COMPLETED
    assert out.response == "hello"


async def test_live_managed_server_reports_exact_pinned_version(orchestrator: Any) -> None:
    snapshot = await orchestrator.acquire()
    health = await snapshot.client.health()
    binary.validate_exact_version(health.version)
    assert health.version == "1.18.33"


@pytest.mark.usefixtures("both_backends")
async def test_session_resumption_works(orchestrator: Any) -> None:
    sid = await new_session(orchestrator)
    first = await asyncio.wait_for(
        orchestrator.run(t.RunInput(session_id=sid, message="Say 'first' and nothing else.")), 180
    )
    assert first.output.status == t.RunStatus.COMPLETED
    assert first.output.response == "first"
    second = await asyncio.wait_for(
        orchestrator.run(t.RunInput(session_id=sid, message="Say 'second' and nothing else.")), 180
    )
    assert second.output.status == t.RunStatus.COMPLETED
    assert second.output.session_id == sid
    assert second.output.response == "second"


@pytest.mark.usefixtures("both_backends")
async def test_new_session_is_created_and_marked_launched_by_you(orchestrator: Any) -> None:
    result = await asyncio.wait_for(orchestrator.run(t.RunInput(message="Say exactly 'created'.")), 120)
    out = result.output
    assert out.status == t.RunStatus.COMPLETED and out.response == "created"
    listing = await orchestrator.list_sessions(t.ListSessionsInput())
    mine = [s for s in listing.sessions if s.id == out.session_id]
    assert mine and mine[0].launched_by_you
    state = await orchestrator.get_session_state(t.GetSessionStateInput(session_id=out.session_id))
    assert state.launched_by_you and state.pending_message_count == 0


async def test_permission_request_returns_status(make_orchestrator: Any, token_file: tuple[Path, str]) -> None:
    orch = make_orchestrator(**PERMISSION_CONFIG)
    path, _ = token_file
    sid = await new_session(orch)
    result = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid, message=external_read_prompt(path))), 120)
    out = result.output
    assert out.status == t.RunStatus.PERMISSION_REQUIRED, out
    assert out.permission_request_id and out.permission_request_id.startswith("per")
    assert out.permission_type == "external_directory"
    assert out.permission_patterns == [f"{path.parent}/*"]


@pytest.mark.usefixtures("both_backends")
async def test_permission_response_resumes_and_completes(make_orchestrator: Any, token_file: tuple[Path, str]) -> None:
    orch = make_orchestrator(**PERMISSION_CONFIG)
    path, token = token_file
    sid = await new_session(orch)
    first = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid, message=external_read_prompt(path))), 60)
    assert first.output.status == t.RunStatus.PERMISSION_REQUIRED
    for round_no in range(1, 6):
        result = await asyncio.wait_for(
            orch.respond_permission(
                t.RespondPermissionInput(session_id=sid, reply="once", message=f"test approval round {round_no}")
            ),
            120,
        )
        if result.output.status == t.RunStatus.COMPLETED:
            assert result.output.response is not None and token in result.output.response
            break
        assert result.output.status == t.RunStatus.PERMISSION_REQUIRED, result.output
    else:
        pytest.fail("exceeded 5 permission rounds")


async def test_permission_reject_returns_none_with_warning(
    make_orchestrator: Any, token_file: tuple[Path, str]
) -> None:
    orch = make_orchestrator(**PERMISSION_CONFIG)
    path, _ = token_file
    sid = await new_session(orch)
    first = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid, message=external_read_prompt(path))), 60)
    assert first.output.status == t.RunStatus.PERMISSION_REQUIRED
    result = await asyncio.wait_for(
        orch.respond_permission(t.RespondPermissionInput(session_id=sid, reply="reject")), 60
    )
    out = result.output
    assert out.status == t.RunStatus.COMPLETED
    assert out.response is None
    assert any("reject" in w.lower() for w in out.warnings), out.warnings


async def test_live_question_tool_infrastructure(make_orchestrator: Any, model_config: Any) -> None:
    """The seed injects a config through OPENCODE_CONFIG_CONTENT; the server must start with it."""
    config = json.loads(model_config())
    config["permission"] = {"edit": "ask", "external_directory": {"*": "ask"}}
    orch = make_orchestrator(config=json.dumps(config))
    sid = await new_session(orch)
    result = await asyncio.wait_for(
        orch.run(t.RunInput(session_id=sid, message="Say 'config test passed' and nothing else.")), 60
    )
    assert result.output.status == t.RunStatus.COMPLETED
    assert result.output.response == "config test passed"


@pytest.mark.usefixtures("both_backends")
async def test_question_flow_end_to_end(orchestrator: Any) -> None:
    sid = await new_session(orchestrator)
    asked = await asyncio.wait_for(orchestrator.run(t.RunInput(session_id=sid, message="ASK")), 60)
    out = asked.output
    assert out.status == t.RunStatus.QUESTION_REQUIRED, out
    assert out.question_request_id and out.question_request_id.startswith("que")
    assert [q.question for q in out.questions] == ["Pick a colour"]
    assert [o.label for o in out.questions[0].options] == ["red", "blue"]
    assert out.questions[0].custom is True
    done = await asyncio.wait_for(
        orchestrator.respond_question(
            t.RespondQuestionInput(
                session_id=sid, question_request_id=out.question_request_id, action="reply", answers=[["blue"]]
            )
        ),
        60,
    )
    assert done.output.status == t.RunStatus.COMPLETED
    assert done.output.response is not None and '"Pick a colour"="blue"' in done.output.response


async def test_question_reject_completes(orchestrator: Any) -> None:
    sid = await new_session(orchestrator)
    asked = await asyncio.wait_for(orchestrator.run(t.RunInput(session_id=sid, message="ASK")), 60)
    assert asked.output.status == t.RunStatus.QUESTION_REQUIRED
    done = await asyncio.wait_for(
        orchestrator.respond_question(t.RespondQuestionInput(session_id=sid, action="reject")), 60
    )
    assert done.output.status == t.RunStatus.COMPLETED
    snapshot = await orchestrator.acquire()
    assert [q for q in await snapshot.client.questions() if q.sessionID == sid] == []


async def test_managed_server_rebuilds_after_forced_stop(orchestrator: Any) -> None:
    initial = await orchestrator.acquire()
    assert initial.managed is not None
    await initial.managed.stop()
    recovered = await asyncio.wait_for(orchestrator.acquire(), 30)
    assert recovered is not initial
    # A new server (the OS may hand it the old one's port again: that is no proof of anything).
    assert recovered.managed is not None and recovered.managed.pid != initial.managed.pid
    commands = await asyncio.wait_for(orchestrator.list_commands(t.ListCommandsInput()), 30)
    assert commands.commands, "expected commands to load after recovery"


async def test_sigkill_between_calls_next_call_succeeds(orchestrator: Any) -> None:
    first = await orchestrator.list_commands(t.ListCommandsInput())
    snapshot = await orchestrator.acquire()
    assert snapshot.managed is not None
    os.killpg(snapshot.managed.pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    second = await asyncio.wait_for(orchestrator.list_commands(t.ListCommandsInput()), 30)
    assert [c.name for c in second.commands] == [c.name for c in first.commands]
    rebuilt = await orchestrator.acquire()
    assert rebuilt is not snapshot and rebuilt.managed is not None and not rebuilt.managed.exited()


@pytest.mark.usefixtures("both_backends")
async def test_unknown_and_malformed_session_ids_are_not_found(orchestrator: Any) -> None:
    for sid in ("ses_doesnotexist000000000000", "garbage", ""):
        with pytest.raises(ToolError) as info:
            await orchestrator.get_session_state(t.GetSessionStateInput(session_id=sid))
        assert str(info.value) == (
            f"invalid input: Session '{sid}' not found. Use list_sessions to discover available sessions."
        )
        with pytest.raises(ToolError) as info:
            await orchestrator.run(t.RunInput(session_id=sid, message="hi"))
        assert f"Session '{sid}' not found" in str(info.value)


async def test_recursion_guard_blocks_start(make_orchestrator: Any, opencode_env: dict[str, str]) -> None:
    env = dict(opencode_env, OPENCODE_ORCHESTRATOR_MANAGED="1")
    orch = make_orchestrator(env=env)
    with pytest.raises(Internal) as info:
        await orch.list_commands(t.ListCommandsInput())
    assert str(info.value) == "internal error: " + binary.RECURSION_GUARD_TEXT


async def test_context_limit_triggers_summarization_with_the_field_names_opencode_accepts(
    make_orchestrator: Any,
) -> None:
    """The reference sent providerId/modelId and always got HTTP 400."""
    prompt = "Say exactly 'short'"
    probe = make_orchestrator()
    first = await asyncio.wait_for(probe.run(t.RunInput(message=prompt)), 120)
    messages = await (await probe.acquire()).client.messages(first.output.session_id)
    used = next(m.info.tokens for m in reversed(messages) if m.info.role == "assistant" and m.info.tokens)
    assert used is not None and used.input > 0
    await probe.close()
    # A context window the same prompt fills to ~90 %: over our 80 % threshold, under OpenCode's own overflow.
    context = int(used.input / 0.9)
    tight = {"provider": {"scripted": {"models": {"scripted-model": {"limit": {"context": context, "output": 8}}}}}}
    orch = make_orchestrator(**tight)
    snapshot = await orch.acquire()
    assert (await snapshot.ensure_model_limits()).get(("scripted", "scripted-model")) == context
    result = await asyncio.wait_for(orch.run(t.RunInput(message=prompt)), 120)
    out = result.output
    assert out.status == t.RunStatus.COMPLETED and out.response == "short"
    assert "Context limit reached; summarization triggered" in out.warnings, out.warnings


async def test_a_pending_webfetch_permission_does_not_break_other_calls(make_orchestrator: Any) -> None:
    """OpenCode 1.18.33 cannot list permissions while a webfetch one is pending (HTTP 400)."""
    from orchestrator_tui.orchestrator.run import PERMISSION_LIST_WARNING

    orch = make_orchestrator(permission={"webfetch": "ask"})
    fetch = 'CALL webfetch {"url": "https://example.com", "format": "text"}'
    asked = await asyncio.wait_for(orch.run(t.RunInput(message=fetch)), 60)
    assert asked.output.status == t.RunStatus.PERMISSION_REQUIRED, asked.output
    assert asked.output.permission_type == "webfetch"
    snapshot = await orch.acquire()
    with pytest.raises(Exception, match="400"):
        await snapshot.client.permissions()  # the server-side defect this test is about

    other = await asyncio.wait_for(orch.run(t.RunInput(message="Say exactly 'still fine'")), 60)
    assert other.output.status == t.RunStatus.COMPLETED and other.output.response == "still fine"
    assert PERMISSION_LIST_WARNING in other.output.warnings

    done = await asyncio.wait_for(
        orch.respond_permission(t.RespondPermissionInput(session_id=asked.output.session_id, reply="reject")), 60
    )
    assert done.output.status == t.RunStatus.COMPLETED
    assert any("reject" in w.lower() for w in done.output.warnings)
    assert await snapshot.client.permissions() == []


@pytest.mark.usefixtures("both_backends")
async def test_a_command_answers_with_its_own_reply(make_orchestrator: Any) -> None:
    """The command carries our message id (OpenCode accepts it); its reply, not the earlier one, is the response."""
    orch = make_orchestrator(command={"echo-back": {"template": "ECHO $ARGUMENTS", "description": "Echo it back"}})
    first = await asyncio.wait_for(orch.run(t.RunInput(message="Say exactly 'first'")), 120)
    assert first.output.response == "first"
    sid = first.output.session_id
    result = await asyncio.wait_for(
        orch.run(t.RunInput(session_id=sid, command="echo-back", message="from the command")), 120
    )
    assert result.output.status == t.RunStatus.COMPLETED
    assert result.output.response == "from the command"
    messages = await (await orch.acquire()).client.messages(sid)
    command_message = next(m for m in messages if m.info.role == "user" and "from the command" in str(m.parts))
    reply = messages[-1].info
    assert reply.role == "assistant" and reply.parentID == command_message.info.id
    assert command_message.info.id.startswith("msg_")


async def test_aborting_the_turn_ends_the_run(orchestrator: Any) -> None:
    """A human aborts the turn the agent's run waits on (the dashboard's `x`): the run ends, it does not wait on."""
    sid = await new_session(orchestrator)
    run = asyncio.ensure_future(orchestrator.run(t.RunInput(session_id=sid, message="HANG")))
    pool = orchestrator.service.pool
    for _ in range(600):
        if "hanging" in pool.session(sid).text:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the model never started answering")
    await (await orchestrator.acquire()).client.abort_session(sid)
    try:
        result = await asyncio.wait_for(run, 60)
    except Internal as exc:  # OpenCode reports the abort as the session's error
        assert "MessageAbortedError" in str(exc), exc
    else:
        pytest.fail(f"the aborted run was not reported as aborted: {result.output}")


async def test_a_command_run_while_another_message_streams_reports_only_its_own_reply(
    make_orchestrator: Any, project_dir: Path
) -> None:
    """0.7.10's command correlation: another message's text streaming in the same session is not the command's.

    A prompt sent outside the run streams slowly; the command, sent meanwhile, is answered after it
    (OpenCode runs one turn at a time). Neither the command's progress nor its partial response nor
    its response may show the other message's words (``s0 s1 …``); only the reply naming the
    command's message as its parent counts.
    """
    commands = project_dir / ".opencode" / "command"
    commands.mkdir(parents=True)
    (commands / "echo-back.md").write_text("---\ndescription: Echo it back\n---\nECHO $ARGUMENTS\n")
    (commands / "ask-me.md").write_text("---\ndescription: Ask a question\n---\nASK $ARGUMENTS\n")
    orch = make_orchestrator(permission={"question": "allow"})
    other_words = re.compile(r"\bs\d+\b")
    client = (await orch.acquire()).client
    pool = orch.service.pool

    async def stream_another_message(sid: str) -> None:
        await client.prompt_async(sid, "SLOW 80 40")
        for _ in range(600):
            if "s3 " in pool.session(sid).text:
                return
            await asyncio.sleep(0.05)
        pytest.fail("the other message never started streaming")

    sid = await new_session(orch)
    await stream_another_message(sid)
    progress: list[str] = []

    async def report(message: str) -> None:
        progress.append(message)

    result = await asyncio.wait_for(
        orch.run(t.RunInput(session_id=sid, command="echo-back", message="from the command"), report), 120
    )
    assert result.output.status == t.RunStatus.COMPLETED, result.output
    assert result.output.response == "from the command"
    assert progress and not [m for m in progress if other_words.search(m)], progress
    messages = await client.messages(sid)
    assert any(m.info.role == "assistant" and "s79" in str(m.parts) for m in messages), "the other message finished"

    # The same with a command that stops at a question: its partial response is not the other message's text.
    await stream_another_message(sid)
    asked = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid, command="ask-me", message="please")), 120)
    assert asked.output.status == t.RunStatus.QUESTION_REQUIRED, asked.output
    assert not other_words.search(asked.output.partial_response or ""), asked.output.partial_response


async def test_aborting_before_the_first_token_ends_the_run(orchestrator: Any, scripted_model: Any) -> None:
    """The abort comes while the model request is open but has not sent a token (`STALL`).

    OpenCode publishes ``session.error`` (MessageAbortedError), marks the session idle, and only
    then writes the error into the reply, which has no part yet: the run reports the abort, not
    a turn that ended without a reply.
    """
    sid = await new_session(orchestrator)
    asked = len(scripted_model.requests)
    run = asyncio.ensure_future(orchestrator.run(t.RunInput(session_id=sid, message="STALL")))
    for _ in range(600):
        if any(r.get("reply") == "stall" for r in scripted_model.requests[asked:]):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the model request never came")
    assert not orchestrator.service.pool.session(sid).text  # not a token yet
    await (await orchestrator.acquire()).client.abort_session(sid)
    try:
        result = await asyncio.wait_for(run, 60)
    except Internal as exc:
        assert "MessageAbortedError" in str(exc), exc
    else:
        pytest.fail(f"the aborted run was not reported as aborted: {result.output}")
