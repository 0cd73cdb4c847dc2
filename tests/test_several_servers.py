"""Several OpenCode servers in one pool: the pool's own, and one attached to it from ``pool.toml``.

The attached server stands for an OpenCode on another machine: a real ``opencode serve`` with
storage of its own and a password, started by the test (never by the pool, which must never
stop it either). The dashboard is the real app driven by Pilot; the agent is a real
``orchestrator-tui mcp`` subprocess. Both read the attached server from the pool's config.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from test_dashboard import SIZE, SLOW, inbox_ids, looked_at, row_line, until
from test_two_supervisors import agent_worker, joined_dashboard

from orchestrator_tui.opencode import binary
from orchestrator_tui.opencode.client import OpenCodeClient
from orchestrator_tui.opencode.keeper import pid_alive
from orchestrator_tui.opencode.process import ManagedServer
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.servers import ServerConfigError, load_servers

pytestmark = pytest.mark.real_opencode

PERMISSIONS = {"permission": {"bash": "ask"}}


@pytest.fixture
def pool_env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    return {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config(**PERMISSIONS)}


@pytest.fixture
async def lab(
    opencode_env: dict[str, str], model_config: Callable[..., str], tmp_path: Path
) -> AsyncIterator[ManagedServer]:
    """Another OpenCode, with its own storage (as on another machine), not started by the pool."""
    data = tmp_path / "lab-data"
    data.mkdir()
    project = tmp_path / "lab-project"
    project.mkdir()
    env = {**opencode_env, "XDG_DATA_HOME": str(data)}
    server = await ManagedServer.start(
        launcher=binary.Launcher(env["OPENCODE_BINARY"]),
        cwd=project,
        env=env,
        config_content=model_config(**PERMISSIONS),
    )
    try:
        yield server
    finally:
        await server.stop()


def write_pool_config(env: dict[str, str], lab: ManagedServer) -> dict[str, str]:
    """``[[server]]`` for the lab server in the pool's config; its password in an environment variable."""
    folder = Registry.for_pool("default", env).path.parent
    (folder / "pool.toml").write_text(
        f'[[server]]\nname = "lab"\nurl = "{lab.base_url}"\npassword_env = "LAB_OPENCODE_PASSWORD"\n'
    )
    return {**env, "LAB_OPENCODE_PASSWORD": lab.password.reveal()}


async def test_two_servers_in_one_pool(
    lab: ManagedServer, pool_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    env = write_pool_config(pool_env, lab)
    # Someone works on the lab server directly (another machine's user).
    direct = OpenCodeClient(lab.base_url, auth=(lab.username, lab.password))
    try:
        lab_session = await direct.create_session(title="lab work")
        await direct.prompt_async(lab_session.id, "Say exactly 'from the lab'")
    finally:
        await direct.aclose()

    async with joined_dashboard(project_dir, env) as human, human.running() as pilot:
        app = human.app
        local = await human.actions.new_session("Say exactly 'at home'", title="home work")
        # The sessions of both servers in one list, each naming its server.
        await until(pilot, lambda: {local.id, lab_session.id} <= set(app.session_list.rows), "both servers' sessions")
        await until(pilot, lambda: "lab" in row_line(app, lab_session.id), "the Server column naming lab")
        assert "local" in row_line(app, local.id)
        await until(pilot, lambda: "● lab" in str(app.status_line.render()), "the lab server live on the status line")

        async with agent_worker(env, project_dir, tmp_path) as agent:
            # The agent's tools route by session id: the lab session's state comes from the lab.
            state = await agent.call("get_session_state", {"session_id": lab_session.id})
            assert state.get("server") == "lab" and state["title"] == "lab work", state
            listed = await agent.call("list_sessions", {})
            servers = {s["id"]: s.get("server") for s in listed["sessions"]}
            assert servers.get(lab_session.id) == "lab" and servers.get(local.id) == "local", listed

            # A run in the lab session asks for bash: the request shows in the one inbox, and the
            # human's `o` there answers it on the lab server.
            out = await agent.call("run", {"session_id": lab_session.id, "message": "BASH echo on-the-lab"})
            assert out["status"] == "permission_required", out
            rid = out["permission_request_id"]
            await until(pilot, lambda: rid in inbox_ids(app), "the lab's request in the inbox")
            app.inbox.select(rid)
            await looked_at(pilot, app, rid)
            await pilot.press("o")
            done = await agent.call("run", {"session_id": lab_session.id, "wait_for_activity": True})
            assert done["status"] == "completed" and done["response"] == "Command output:\non-the-lab", done

            # The lab goes down: its sessions are marked unreachable, the pool's own server stays
            # fully usable, for the human and for the agent.
            os.killpg(lab.pid, signal.SIGKILL)
            await until(pilot, lambda: "⊘" in row_line(app, lab_session.id), "the lab session marked unreachable")
            await until(pilot, lambda: "✗ lab" in str(app.status_line.render()), "the lab down on the status line")
            home = await agent.call("run", {"session_id": local.id, "message": "Say exactly 'still here'"})
            assert home["status"] == "completed" and home["response"] == "still here", home
            again = await human.actions.new_session("Say exactly 'new at home'")
            await until(pilot, lambda: again.id in app.session_list.rows, "a new session on the pool's own server")
            gone = await agent.call("get_session_state", {"session_id": lab_session.id}, timeout=SLOW)
            assert "error" in gone and "lab" in gone["error"], gone
            listed = await agent.call("list_sessions", {})
            assert local.id in {s["id"] for s in listed["sessions"]}, listed


async def test_the_attached_server_is_supervised_while_the_pools_own_cannot_start(
    lab: ManagedServer, pool_env: dict[str, str], project_dir: Path
) -> None:
    """A server that goes down never blocks the others, the pool's own included."""
    env = {**write_pool_config(pool_env, lab), "OPENCODE_BINARY": str(project_dir / "no-such-opencode")}
    direct = OpenCodeClient(lab.base_url, auth=(lab.username, lab.password))
    try:
        lab_session = await direct.create_session(title="lab work")
        await direct.prompt_async(lab_session.id, "BASH echo on-the-lab")
        async with joined_dashboard(project_dir, env) as human, human.app.run_test(size=SIZE) as pilot:
            app = human.app  # never "ready": that waits for its own server
            await until(pilot, lambda: app.server_state.stream == "down", "the pool's own server reported down")
            await until(pilot, lambda: lab_session.id in app.session_list.rows, "the lab's session in the list")
            assert "lab" in row_line(app, lab_session.id)
            await until(pilot, lambda: len(inbox_ids(app)) == 1, "the lab's request in the inbox")
            assert not app.ready.is_set()  # still retrying its own server
    finally:
        await direct.aclose()


def test_pool_config_refuses_a_password_in_the_file_and_names_the_fix(tmp_path: Path) -> None:
    (tmp_path / "pool.toml").write_text('[[server]]\nname = "lab"\nurl = "http://10.0.0.5:4096"\npassword = "x"\n')
    with pytest.raises(ServerConfigError) as info:
        load_servers(tmp_path, env={})
    assert "password_env" in info.value.fix and "password_file" in info.value.fix

    lab = '[[server]]\nname = "lab"\nurl = "http://10.0.0.5:4096"\n'
    (tmp_path / "pool.toml").write_text(lab + 'password_env = "NOPE"\n')
    with pytest.raises(ServerConfigError, match="NOPE"):
        load_servers(tmp_path, env={})

    secret = tmp_path / "lab.password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    (tmp_path / "pool.toml").write_text(
        f'[[server]]\nname = "lab"\nurl = "http://10.0.0.5:4096"\npassword_file = "{secret}"\n'
    )
    with pytest.raises(ServerConfigError, match=r"chmod|read"):
        load_servers(tmp_path, env={})
    secret.chmod(0o600)
    (server,) = load_servers(tmp_path, env={})
    assert server.password is not None and server.password.reveal() == "s3cret" and "s3cret" not in repr(server)

    (given,) = load_servers(None, ["http://box.local:4096"])
    assert (given.name, given.password) == ("box.local-4096", None)
    with pytest.raises(ServerConfigError, match="not an OpenCode server URL"):
        load_servers(None, ["ftp://x"])


async def test_the_pool_never_stops_an_attached_server_and_still_stops_its_own(
    lab: ManagedServer, pool_env: dict[str, str], project_dir: Path
) -> None:
    env = write_pool_config(pool_env, lab)
    async with joined_dashboard(project_dir, env) as human, human.running() as pilot:
        await until(pilot, lambda: human.app.pool.servers.get("lab", ("", ""))[0] == "connected", "the lab followed")
        own = human.service.handle.current
        assert own is not None and own.pid is not None
        own_pid = own.pid
    # The last front end left: the keeper stops the pool's own server; the lab is not ours.
    deadline = asyncio.get_running_loop().time() + 15
    while pid_alive(own_pid):
        assert asyncio.get_running_loop().time() < deadline, "the pool's own server outlived its last front end"
        await asyncio.sleep(0.1)
    client = OpenCodeClient(lab.base_url, auth=(lab.username, lab.password))
    try:
        assert (await client.health()).healthy
    finally:
        await client.aclose()
