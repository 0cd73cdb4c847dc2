"""The user's own OpenCode, of another release line: attach, prompt, permission, question, command, resync.

People attach orchestrator-tui to the OpenCode they already run, which need not be the pinned
1.18.33. ``./dev test-opencode-lines`` runs this module once per older line npm serves, with
``ORCHESTRATOR_TUI_OPENCODE_VERSION=<line>.x`` (tests/conftest.py installs that release into the
user cache beside the pinned one); without that variable tests/conftest.py does not collect it:
the whole suite covers the pinned release, and running this too would push it past its time.

The server is "the user's" ``opencode serve`` (its own process group, a password, the scripted
model), and orchestrator-tui attaches to it as ``--attach URL`` does. A release outside the
supported range must be refused at once, naming the range (`test_attaching_checks_the_version`);
the other tests then allow its line explicitly, to find out (and record in the README) what works.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from conftest import OPENCODE_VERSION_ENV
from test_attach_recovery import UsersServer

from orchestrator_tui.opencode import binary
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.tools import Orchestrator
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

pytestmark = [
    pytest.mark.real_opencode,
    pytest.mark.skipif(
        not __import__("os").environ.get(OPENCODE_VERSION_ENV, "").strip(),
        reason=f"run by ./dev test-opencode-lines (needs {OPENCODE_VERSION_ENV})",
    ),
]

#: The seed's permission fixture, plus a command of the project's config.
CONFIG = {
    "permission": {"question": "allow", "read": "allow", "edit": "ask", "bash": "ask", "external_directory": "ask"},
    "command": {"echo-back": {"template": "ECHO $ARGUMENTS", "description": "Echo it back"}},
}


def line_of(version: str) -> str:
    return ".".join(binary.normalize_version(version).split(".")[:2])


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def users_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("users-project")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


@pytest.fixture(scope="module")
def users_server(
    opencode_base_env: dict[str, str],
    scripted_model: ScriptedModelServer,
    users_project: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[UsersServer]:
    """The user's ``opencode serve`` of the release under test, one for the module (a start costs seconds)."""
    import json

    config = json.dumps(opencode_config(scripted_model.base_url, **CONFIG))
    log = tmp_path_factory.mktemp("users-server") / "opencode.log"
    server = UsersServer(dict(opencode_base_env, OPENCODE_CONFIG_CONTENT=config), users_project, log)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def allow_line(opencode_version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attach to the release under test even when its line is outside the supported range:
    explicitly, and only here, to find out what works on it."""
    if not binary.attach_version_supported(opencode_version):
        monkeypatch.setattr(binary, "ATTACH_LINES", (*binary.ATTACH_LINES, line_of(opencode_version)))


def attach_spec(server: UsersServer, project: Path, env: dict[str, str], *, dashboard: bool = False) -> ServerSpec:
    """The worker's view (one directory, as ``orchestrator-tui mcp --attach``) or the dashboard's
    (every directory, the global event stream, as a pool's ``[[server]]``)."""
    return ServerSpec(
        cwd=project,
        attach_url=server.url,
        password=server.password,
        env=env,
        scope_directory=not dashboard,
        every_directory=dashboard,
    )


@pytest.fixture
async def attached(
    allow_line: None, users_server: UsersServer, users_project: Path, opencode_base_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[Orchestrator]:
    """The agent's tools on the user's server (``orchestrator-tui mcp --attach URL``)."""
    env = dict(opencode_base_env, ORCHESTRATOR_TUI_STATE_DIR=str(tmp_path / "state"))
    registry = Registry(tmp_path / "state" / "registry.sqlite3")
    orch = Orchestrator(PoolService(attach_spec(users_server, users_project, env)), registry=registry, env=env)
    try:
        yield orch
    finally:
        await orch.close()
        registry.close()


async def new_session(orch: Orchestrator) -> str:
    snapshot = await orch.acquire()
    return (await snapshot.client.create_session()).id


async def test_attaching_checks_the_version(
    users_server: UsersServer, users_project: Path, opencode_version: str
) -> None:
    """In the range: attached, the version recorded. Outside: refused at once, naming the range."""
    service = PoolService(ServerSpec(cwd=users_project, attach_url=users_server.url, password=users_server.password))
    try:
        if binary.attach_version_supported(opencode_version):
            snapshot = await asyncio.wait_for(service.acquire(), 30)
            assert snapshot.version == opencode_version
        else:
            with pytest.raises(ServerUnavailable) as err:
                await asyncio.wait_for(service.acquire(), 30)
            text = str(err.value)
            assert f"reports version {opencode_version}" in text, text
            assert f"works only with OpenCode {binary.attach_versions()}" in text and "Fix:" in text, text
    finally:
        await service.close()


async def test_prompt_and_the_session_tools(attached: Orchestrator) -> None:
    sid = await new_session(attached)
    result = await asyncio.wait_for(
        attached.run(t.RunInput(session_id=sid, message="Say exactly 'hello' and nothing else.")), 180
    )
    assert result.output.status == t.RunStatus.COMPLETED, result.output
    assert result.output.response == "hello"
    again = await asyncio.wait_for(attached.run(t.RunInput(session_id=sid, message="Say exactly 'second'")), 180)
    assert again.output.status == t.RunStatus.COMPLETED and again.output.response == "second"
    listing = await attached.list_sessions(t.ListSessionsInput())
    assert sid in [s.id for s in listing.sessions]
    state = await attached.get_session_state(t.GetSessionStateInput(session_id=sid))
    assert state.pending_message_count == 0


async def test_permission_asked_then_granted(attached: Orchestrator, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    token = f"token {time.time_ns()}"
    (outside / "token.txt").write_text(token)
    sid = await new_session(attached)
    asked = await asyncio.wait_for(
        attached.run(t.RunInput(session_id=sid, message=f"READ {outside / 'token.txt'}")), 120
    )
    out = asked.output
    assert out.status == t.RunStatus.PERMISSION_REQUIRED, out
    assert out.permission_type == "external_directory" and out.permission_request_id
    done = await asyncio.wait_for(
        attached.respond_permission(t.RespondPermissionInput(session_id=sid, reply="once")), 120
    )
    assert done.output.status == t.RunStatus.COMPLETED, done.output
    assert done.output.response is not None and token in done.output.response


async def test_question_asked_then_answered(attached: Orchestrator) -> None:
    sid = await new_session(attached)
    asked = await asyncio.wait_for(attached.run(t.RunInput(session_id=sid, message="ASK")), 120)
    out = asked.output
    assert out.status == t.RunStatus.QUESTION_REQUIRED, out
    assert [q.question for q in out.questions] == ["Pick a colour"]
    assert [o.label for o in out.questions[0].options] == ["red", "blue"]
    done = await asyncio.wait_for(
        attached.respond_question(
            t.RespondQuestionInput(
                session_id=sid, question_request_id=out.question_request_id, action="reply", answers=[["blue"]]
            )
        ),
        120,
    )
    assert done.output.status == t.RunStatus.COMPLETED, done.output
    assert done.output.response is not None and '"Pick a colour"="blue"' in done.output.response


async def test_a_command_of_the_project(attached: Orchestrator) -> None:
    commands = await attached.list_commands(t.ListCommandsInput())
    assert "echo-back" in [c.name for c in commands.commands]
    sid = await new_session(attached)
    result = await asyncio.wait_for(
        attached.run(t.RunInput(session_id=sid, command="echo-back", message="from the command")), 180
    )
    assert result.output.status == t.RunStatus.COMPLETED, result.output
    assert result.output.response == "from the command"


@pytest.mark.parametrize("dashboard", [False, True], ids=["worker", "dashboard"])
async def test_a_reconnect_resyncs_what_is_pending(
    allow_line: None,
    users_server: UsersServer,
    users_project: Path,
    opencode_base_env: dict[str, str],
    dashboard: bool,
) -> None:
    """OpenCode replays nothing after a reconnect: the resync must find the pending question,
    through the directory's stream (a worker) or the global one (the dashboard, a pool's servers)."""
    service = PoolService(attach_spec(users_server, users_project, opencode_base_env, dashboard=dashboard))
    try:
        snapshot = await asyncio.wait_for(service.acquire(), 30)
        assert await service.wait_stream(30), "the event stream did not connect"
        client = snapshot.client.at(str(users_project)) if dashboard else snapshot.client
        sid = (await client.create_session()).id
        await client.prompt_async(sid, "ASK")
        await wait_until(lambda: service.pool.needs_input(sid))
        view = service.pool.sessions.get(sid)
        assert view is not None and view.directory == str(users_project)
        resyncs = service.pool.resyncs
        service.pool.questions.clear()  # forget what the stream said; only the resync can bring it back
        assert not service.pool.needs_input(sid)
        await service.primary._attach(snapshot)  # a new stream, as after any cut; it resyncs on connect
        await wait_until(lambda: service.pool.needs_input(sid))
        assert service.pool.resyncs == resyncs + 1
        await client.reject_question(next(iter(service.pool.questions)))
    finally:
        await service.close()


def test_the_release_under_test(opencode_version: str, opencode_binary: str) -> None:
    """What ran: the release the variable asked for, from its own install in the user cache."""
    assert binary.binary_version(opencode_binary) == opencode_version
    assert Path(opencode_binary) == binary.cached_binary_path(version=opencode_version)
