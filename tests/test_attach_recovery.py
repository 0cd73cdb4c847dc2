"""An attached OpenCode server that goes away and comes back is used again (``--attach``).

The server here is the user's own ``opencode serve`` on a fixed address, started and killed by
the test (its own process group). It is stopped, the address refuses connections for a few
seconds, and the same server is started again on the same address: the agent's tools and the
pool's event stream (what the dashboard shows) must work again within seconds, without a new
front end. Before, the first failure was sticky: every later call said "External OpenCode server
unavailable" until the worker was restarted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from test_dashboard import Rig, make_rig, on_screen, screen_text, until

from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import Internal
from orchestrator_tui.orchestrator.tools import Orchestrator
from orchestrator_tui.pool.service import PoolService, ServerSpec

__all__ = ["make_rig"]  # a fixture, used by name

pytestmark = pytest.mark.real_opencode
HELLO = "Say exactly 'hello' and nothing else."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UsersServer:
    """``opencode serve`` run by "the user" on a fixed port with a password, in its own group."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env, OPENCODE_SERVER_PASSWORD=self.password)
        self.cwd = cwd
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [self.env["OPENCODE_BINARY"], "serve", "--hostname", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                # Short timeouts: requests in the moment before the server is ready can hang.
                if httpx.get(f"{self.url}/global/health", auth=("opencode", self.password), timeout=1).is_success:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the user's OpenCode did not come up"
            time.sleep(0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def users_server(
    opencode_env: dict[str, str], model_config: Callable[..., str], project_dir: Path, tmp_path: Path
) -> Iterator[UsersServer]:
    server = UsersServer(dict(opencode_env, OPENCODE_CONFIG_CONTENT=model_config()), project_dir, tmp_path / "oc.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_an_attached_server_that_comes_back_is_used_again(
    users_server: UsersServer, opencode_env: dict[str, str], project_dir: Path
) -> None:
    spec = ServerSpec(cwd=project_dir, attach_url=users_server.url, password=users_server.password)
    agent = Orchestrator(PoolService(spec), env=opencode_env)
    try:
        first = await asyncio.wait_for(agent.run(t.RunInput(message=HELLO)), 60)
        assert first.output.response == "hello"
        pool = agent.service.pool
        assert await agent.service.wait_stream(10)

        # The server goes away: calls fail, clearly, and the stream says it is reconnecting.
        users_server.kill()
        with pytest.raises(Internal, match=r"External OpenCode server unavailable \(base_url="):
            await agent.list_sessions(t.ListSessionsInput())
        await asyncio.sleep(3.0)  # the address refuses connections for a while
        with pytest.raises(Internal, match="External OpenCode server unavailable"):
            await agent.list_sessions(t.ListSessionsInput())
        assert pool.connection_state != "connected"

        # It comes back on the same address: the next calls use it, and the stream reconnects.
        users_server.start()
        back = time.monotonic()
        while True:
            try:
                listed = await agent.list_sessions(t.ListSessionsInput())
                break
            except Internal:
                assert time.monotonic() - back < 10, "the attached server was not used again"
                await asyncio.sleep(0.25)
        assert first.output.session_id in [s.id for s in listed.sessions]
        again = await asyncio.wait_for(agent.run(t.RunInput(message=HELLO)), 60)
        assert again.output.response == "hello"
        deadline = time.monotonic() + 15
        while pool.connection_state != "connected":
            assert time.monotonic() < deadline, f"the event stream stayed {pool.connection_state}"
            await asyncio.sleep(0.1)
    finally:
        await agent.close()
    # Attached means not ours: closing the front end leaves the user's server running.
    assert users_server.proc is not None and users_server.proc.poll() is None


async def test_the_dashboard_follows_an_attached_server_that_comes_back(
    users_server: UsersServer, make_rig: Callable[..., Rig], project_dir: Path
) -> None:
    rig = make_rig(
        spec=ServerSpec(cwd=project_dir, attach_url=users_server.url, password=users_server.password, env={})
    )
    async with rig.running() as pilot:
        await on_screen(pilot, "● live", "attached OpenCode 1.18.33")
        users_server.kill()
        await until(pilot, lambda: "● live" not in screen_text(rig.app), "the dashboard to see the server go")
        await asyncio.sleep(3.0)
        users_server.start()
        # Back within seconds: the health check (every 5 s) and the stream's recovery both probe it.
        await until(pilot, lambda: "● live" in screen_text(rig.app), "the dashboard to be live again", timeout=20)
        session = await rig.actions.new_session("Say exactly 'hello' and nothing else.")
        await until(pilot, lambda: session.id in rig.app.pool.sessions, "the new session in the list")
