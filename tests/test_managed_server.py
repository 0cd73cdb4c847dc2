"""The managed ``opencode serve`` process: spawn, readiness, auth, stop, and nothing left behind.

Tests marked ``real_opencode`` run the pinned binary (installed into the user cache on first use);
the others use tiny ``sh``/Python stand-ins to reach failure paths quickly. Every server a test
starts is stopped by the ``servers`` fixture even when the test fails, and every test checks that
no process of the group survives.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_tui.opencode import process
from orchestrator_tui.opencode.binary import MANAGED_ENV, PINNED_VERSION, Launcher, resolve_launcher
from orchestrator_tui.opencode.process import (
    ENV_GUARD_PLUGIN,
    PASS_ENV,
    ManagedServer,
    ServerStartError,
    kill_all_managed,
)
from orchestrator_tui.opencode.secret import Secret

StartFn = Callable[..., Awaitable[ManagedServer]]


# ------------------------------------------------------------------------------------------------
# helpers


def live_members(pgid: int) -> list[int]:
    """Pids of the group's processes that are not zombies (zombies are the init's to reap)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            found.append(int(entry))
    return found


async def assert_group_gone(pgid: int, within: float = 5.0) -> None:
    """Nothing of the group runs any more (SIGKILL is sent; the kernel may need a moment to
    finish the victims), and once init has reaped the orphans, the group is gone."""
    deadline = time.monotonic() + within
    dying_deadline = time.monotonic() + within  # SIGKILLed processes die at once, but a loaded machine schedules late
    while live_members(pgid):
        assert time.monotonic() < dying_deadline, f"group {pgid} still has live processes"
        await asyncio.sleep(0.01)
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"group {pgid} still exists (zombies not reaped?)"
        await asyncio.sleep(0.05)


def proc_argv_cwd(pid: int) -> tuple[list[str], str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0")[:-1]]
    return argv, os.readlink(f"/proc/{pid}/cwd")


def fake(script: str) -> Launcher:
    """A stand-in server: ``sh -c <script> x serve --hostname 127.0.0.1 --port N`` ($1.. = our args)."""
    return Launcher("sh", ("-c", script, "x"))


READY = 'echo "opencode server listening on http://127.0.0.1:$5"'


@pytest.fixture
async def servers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[ManagedServer]]:
    """Every ManagedServer spawned during the test (including failed starts), stopped at teardown."""
    spawned: list[ManagedServer] = []
    original = ManagedServer._spawn.__func__  # type: ignore[attr-defined]

    def recording_spawn(cls: type[ManagedServer], *args: Any, **kwargs: Any) -> ManagedServer:
        server = original(cls, *args, **kwargs)
        spawned.append(server)
        return server

    monkeypatch.setattr(ManagedServer, "_spawn", classmethod(recording_spawn))
    try:
        yield spawned
    finally:
        for server in spawned:
            try:
                await server.stop(grace=1.0)
            finally:
                server.kill_sync()
        for server in spawned:
            await assert_group_gone(server.pid)


@pytest.fixture
def start(servers: list[ManagedServer], tmp_path: Path) -> StartFn:
    async def run(launcher: Launcher, **kwargs: Any) -> ManagedServer:
        kwargs.setdefault("cwd", tmp_path)
        return await ManagedServer.start(launcher=launcher, **kwargs)

    return run


@pytest.fixture(scope="session")
def real_launcher() -> Launcher:
    """The pinned OpenCode, resolved (and installed if needed) from the real user cache."""
    return resolve_launcher(Path.cwd(), os.environ)


@pytest.fixture
def storage_env(xdg_root: Path) -> dict[str, str]:
    """Our environment with OpenCode's storage in the session's temporary XDG dirs."""
    env = dict(os.environ)
    for var in (MANAGED_ENV, "OPENCODE_CONFIG_CONTENT", "OPENCODE_SERVER_PASSWORD", "OPENCODE_CLIENT"):
        env.pop(var, None)
    for name in ("data", "config", "cache", "state"):
        env[f"XDG_{name.upper()}_HOME"] = str(xdg_root / name)
    return env


# ------------------------------------------------------------------------------------------------
# the real server


@pytest.mark.real_opencode
async def test_real_server_start_auth_health_stop(
    start: StartFn, real_launcher: Launcher, storage_env: dict[str, str], tmp_path: Path
) -> None:
    real_tmp = str(tmp_path.resolve())  # noqa: ASYNC240 (test setup, not on a hot path)
    t0 = time.monotonic()
    server = await start(real_launcher, env=storage_env)
    ready_s = time.monotonic() - t0

    assert server.base_url == f"http://127.0.0.1:{server.port}"
    assert server.username == "opencode"
    assert len(server.password.reveal()) >= 40
    assert server.launcher == real_launcher
    assert os.getpgid(server.pid) == server.pid  # its own group
    assert not server.exited()
    argv, cwd = proc_argv_cwd(server.pid)
    assert argv[-5:] == ["serve", "--hostname", "127.0.0.1", "--port", str(server.port)]
    assert cwd == real_tmp

    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        health = await client.get("/global/health", auth=server.auth)
        assert health.status_code == 200
        assert health.json() == {"healthy": True, "version": PINNED_VERSION}
        assert (await client.get("/global/health")).status_code == 401
        assert (await client.get("/global/health", auth=("opencode", "wrong"))).status_code == 401
        assert (await client.get("/doc")).status_code == 401

    t1 = time.monotonic()
    await server.stop()
    stop_s = time.monotonic() - t1
    assert server.exited()
    await assert_group_gone(server.pid)
    await server.stop()  # idempotent
    server.kill_sync()
    print(f"real opencode: ready after {ready_s:.2f} s, stopped in {stop_s:.3f} s")
    assert stop_s < 3.0


@pytest.mark.real_opencode
async def test_real_server_swallowed_sigterm_escalates_to_sigkill(
    start: StartFn, real_launcher: Launcher, storage_env: dict[str, str]
) -> None:
    # OpenCode keeps the default SIGTERM disposition, and an ignored signal stays ignored across
    # exec: this stands in for the SIGTERM that OpenCode's background npm install swallows.
    ignoring = Launcher(
        "sh", ("-c", 'trap "" TERM; exec "$0" "$@"', real_launcher.binary, *real_launcher.args)
    )
    server = await start(ignoring, env=storage_env)
    os.kill(server.pid, signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert not server.exited()  # swallowed
    t0 = time.monotonic()
    await server.stop(grace=0.5)
    elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 10.0  # the grace, then SIGKILL: not the 300 s the child would wait
    assert server.returncode == -signal.SIGKILL
    await assert_group_gone(server.pid)


async def test_stopped_child_is_killed_after_the_grace(start: StartFn) -> None:
    server = await start(fake(f'trap "" TERM; {READY}; exec sleep 300'))
    os.kill(server.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    await server.stop(grace=0.5)
    assert 0.5 <= time.monotonic() - t0 < 10.0  # the grace, then SIGKILL
    assert server.returncode == -signal.SIGKILL
    await assert_group_gone(server.pid)


@pytest.mark.real_opencode
async def test_real_server_gets_config_content(
    start: StartFn, real_launcher: Launcher, storage_env: dict[str, str]
) -> None:
    config = {
        "autoupdate": False,
        "share": "disabled",
        "command": {
            "probe-from-config": {"template": "say $ARGUMENTS", "description": "injected by the test"}
        },
    }
    server = await start(real_launcher, env=storage_env, config_content=json.dumps(config))
    async with httpx.AsyncClient(base_url=server.base_url, auth=server.auth, timeout=10) as client:
        commands = (await client.get("/command")).json()
    found = [c for c in commands if c.get("name") == "probe-from-config"]
    assert found and found[0]["description"] == "injected by the test"


@pytest.mark.real_opencode
async def test_real_server_port_taken_is_retried_on_another_port(
    start: StartFn,
    real_launcher: Launcher,
    storage_env: dict[str, str],
    servers: list[ManagedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = process._free_port
        monkeypatch.setattr(process, "_free_port", lambda: next(ports, None) or real_free_port())

        server = await start(real_launcher, env=storage_env)
    assert server.port != taken
    assert [s.port for s in servers] == [taken, server.port]
    assert servers[0].returncode == 1 and any("ServeError" in line for line in servers[0].stderr_tail())
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"{server.base_url}/global/health", auth=server.auth)).status_code == 200


# ------------------------------------------------------------------------------------------------
# start failures (stand-ins)


async def test_process_dying_at_start_gives_the_error_text(start: StartFn) -> None:
    with pytest.raises(ServerStartError) as err:
        await start(Launcher("sh", ("-c", "echo boom >&2; exit 1", "x")))
    assert str(err.value) == "Failed to spawn server: Server process exited unexpectedly\nboom"


async def test_exit_without_stderr_names_the_status(start: StartFn) -> None:
    with pytest.raises(ServerStartError) as err:
        await start(fake("exit 3"))
    assert str(err.value) == (
        "Failed to spawn server: Server process exited unexpectedly\n(nothing on stderr; exit status 3)"
    )


async def test_stderr_tail_is_the_last_50_lines_without_colours(start: StartFn) -> None:
    script = (
        'i=0; while [ $i -lt 200 ]; do i=$((i+1)); printf "\\033[31mline %s\\033[0m\\n" $i >&2; done; exit 1'
    )
    with pytest.raises(ServerStartError) as err:
        await start(fake(script))
    lines = str(err.value).splitlines()
    assert lines[0] == "Failed to spawn server: Server process exited unexpectedly"
    assert lines[1:] == [f"line {i}" for i in range(151, 201)]


async def test_spawn_oserror_text(start: StartFn, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-opencode"
    with pytest.raises(ServerStartError) as err:
        await start(Launcher(str(missing)))
    assert str(err.value) == f"Failed to spawn server: [Errno 2] No such file or directory: '{missing}'"


async def test_port_conflict_is_retried_once(
    start: StartFn, servers: list[ManagedServer], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    serve_error = (
        'echo run >> "$RUNS"; '
        'printf "Error: Unexpected error\\n\\n\\033[91mServeError\\033[0m\\n" >&2; exit 1'
    )
    env = {**os.environ, "RUNS": str(runs), PASS_ENV: "RUNS"}
    with pytest.raises(ServerStartError) as err:
        await start(fake(serve_error), env=env)
    assert runs.read_text().splitlines() == ["run", "run"]  # two attempts, not more
    assert str(err.value).endswith("ServeError")
    assert servers[0].port != servers[1].port

    runs.unlink()
    first_fails = f'if [ -e "$RUNS" ]; then {READY}; exec sleep 30; fi; {serve_error}'
    server = await start(fake(first_fails), env=env)
    assert not server.exited()
    assert len(servers) == 4


async def test_other_exit_is_not_retried(start: StartFn, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with pytest.raises(ServerStartError):
        await start(
            fake('echo run >> "$RUNS"; echo "Error: bad config" >&2; exit 1'),
            env={**os.environ, "RUNS": str(runs), PASS_ENV: "RUNS"},
        )
    assert runs.read_text().splitlines() == ["run"]


async def test_no_listening_line_and_no_doc_times_out_and_kills(
    start: StartFn, servers: list[ManagedServer]
) -> None:
    t0 = time.monotonic()
    with pytest.raises(ServerStartError) as err:
        await start(fake("echo starting >&2; sleep 30 & exec sleep 30"), startup_timeout=0.3)
    assert time.monotonic() - t0 < 10.0  # not the child's 30 s
    assert str(err.value) == "Server not ready within 300ms\nstarting"
    assert servers[0].exited()
    await assert_group_gone(servers[0].pid)


DOC_SERVER = """
import base64, http.server, os, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
expected = "Basic " + base64.b64encode(
    f"{os.environ['OPENCODE_SERVER_USERNAME']}:{os.environ['OPENCODE_SERVER_PASSWORD']}".encode()).decode()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/doc" and self.headers.get("Authorization") == expected
        self.send_response(200 if ok else 401)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


async def test_doc_probe_after_timeout_accepts_a_server_without_the_line(start: StartFn) -> None:
    # Long enough for a Python to start and listen on a loaded machine: the probe comes after it.
    server = await start(Launcher(sys.executable, ("-c", DOC_SERVER)), startup_timeout=2.5)
    assert not server.exited()
    async with httpx.AsyncClient(timeout=2) as client:
        assert (await client.get(f"{server.base_url}/doc", auth=server.auth)).status_code == 200


async def test_cancelled_start_kills_the_group(start: StartFn, servers: list[ManagedServer]) -> None:
    task = asyncio.create_task(start(fake("sleep 30 & exec sleep 30")))
    await asyncio.sleep(0.3)
    assert len(servers) == 1 and not servers[0].exited()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert servers[0].exited()
    await assert_group_gone(servers[0].pid)
    assert servers[0].pid not in process._live


# ------------------------------------------------------------------------------------------------
# the child's environment and argv


async def test_child_environment_and_argv(start: StartFn, tmp_path: Path) -> None:
    out = tmp_path / "child"
    script = f'env > "{out}.env"; echo "$@" > "{out}.argv"; {READY}; exec sleep 30'
    env = {
        "PATH": os.environ["PATH"],
        "KEEP": "me",
        PASS_ENV: "KEEP",
        "DROP": "me",
        "OPENCODE_CONFIG_CONTENT": '{"a": 0}',
        MANAGED_ENV: "0",
    }
    server = await start(fake(script), env=env)
    child_env = dict(
        line.split("=", 1) for line in out.with_suffix(".env").read_text().splitlines() if "=" in line
    )
    assert child_env["KEEP"] == "me"  # named in ORCHESTRATOR_TUI_PASS_ENV
    assert "DROP" not in child_env  # not on the allow-list
    assert child_env[MANAGED_ENV] == "1"
    assert child_env["OPENCODE_SERVER_USERNAME"] == "opencode"
    assert child_env["OPENCODE_SERVER_PASSWORD"] == server.password.reveal()
    guard = ENV_GUARD_PLUGIN.resolve().as_uri()
    # passed through when not given, with our plugin added
    assert json.loads(child_env["OPENCODE_CONFIG_CONTENT"]) == {"a": 0, "plugin": [guard]}
    assert "OPENCODE_CLIENT" not in child_env
    assert "HOME" not in child_env  # the given env replaces ours
    assert out.with_suffix(".argv").read_text().split() == [
        "serve",
        "--hostname",
        "127.0.0.1",
        "--port",
        str(server.port),
    ]

    other = await start(fake(script), env=env, config_content='{"a":1}')
    assert f'OPENCODE_CONFIG_CONTENT={{"a": 1, "plugin": ["{guard}"]}}' in out.with_suffix(".env").read_text()
    assert other.password != server.password


# ------------------------------------------------------------------------------------------------
# life after start, stop, and cleanup


async def test_stdout_keeps_being_drained(start: StartFn, tmp_path: Path) -> None:
    done = tmp_path / "done"
    # 4 MB after the line: far more than a pipe holds, so this only finishes if we keep reading
    script = f'{READY}; yes | head -c 4194304; touch "{done}"; exec sleep 30'
    await start(fake(script))
    for _ in range(100):
        if done.exists():
            break
        await asyncio.sleep(0.05)
    assert done.exists()


async def test_exited_notices_a_dead_child(start: StartFn, tmp_path: Path) -> None:
    # the child exits only when told to (a file appears), so a slow start cannot make it early
    go = tmp_path / "go"
    server = await start(fake(f'{READY}; while [ ! -e "{go}" ]; do sleep 0.02; done; exit 0'))
    assert not server.exited()
    go.touch()
    for _ in range(100):
        if server.exited():
            break
        await asyncio.sleep(0.02)
    assert server.exited() and server.returncode == 0
    await server.stop()  # the group is already gone: no error


async def test_stop_takes_the_whole_group_and_tolerates_a_dead_leader(start: StartFn) -> None:
    server = await start(fake(f"sleep 300 & {READY}; exec sleep 300"))
    assert len(live_members(server.pid)) == 2
    os.kill(server.pid, signal.SIGKILL)  # leader gone, its child still in the group
    t0 = time.monotonic()
    await server.stop(grace=30.0)
    assert time.monotonic() - t0 < 10.0  # no waiting out the grace for a leader already dead
    await assert_group_gone(server.pid)


async def test_kill_all_managed_and_kill_sync(start: StartFn) -> None:
    a = await start(fake(f"sleep 300 & {READY}; exec sleep 300"))
    b = await start(fake(f"{READY}; exec sleep 300"))
    assert {a.pid, b.pid} <= set(process._live)
    kill_all_managed()
    assert a.exited() and b.exited()
    assert a.pid not in process._live and b.pid not in process._live
    for s in (a, b):
        await assert_group_gone(s.pid)
    a.kill_sync()  # idempotent
    await a.stop()


async def test_context_manager_stops(start: StartFn) -> None:
    async with await start(fake(f"{READY}; exec sleep 300")) as server:
        assert not server.exited()
    assert server.exited()
    assert "password" not in repr(server) and server.password.reveal() not in repr(server)


def test_atexit_kills_what_a_process_leaves_running(tmp_path: Path) -> None:
    """A program that starts a server and exits without stopping it leaves nothing behind."""
    pid_file = tmp_path / "pid"
    code = f"""
import asyncio, pathlib
from orchestrator_tui.opencode.binary import Launcher
from orchestrator_tui.opencode.process import ManagedServer
async def main():
    launcher = Launcher("sh", ("-c", {f"sleep 300 & {READY}; exec sleep 300"!r}, "x"))
    s = await ManagedServer.start(launcher=launcher, cwd=pathlib.Path({str(tmp_path)!r}))
    pathlib.Path({str(pid_file)!r}).write_text(str(s.pid))
asyncio.run(main())
"""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=30, env={**os.environ, "PYTHONPATH": str(repo)}
    )
    pgid = int(pid_file.read_text())
    asyncio.run(assert_group_gone(pgid))


def test_sdk_client_env_keeps_the_question_tool() -> None:
    from orchestrator_tui.opencode.process import child_environment

    pw = Secret("pw")
    child_env = child_environment({"OPENCODE_CLIENT": "sdk"}, password=pw, config_content=None)
    assert child_env["OPENCODE_ENABLE_QUESTION_TOOL"] == "1"
    explicit = child_environment(
        {"OPENCODE_CLIENT": "sdk", "OPENCODE_ENABLE_QUESTION_TOOL": "0"}, password=pw, config_content=None
    )
    assert explicit["OPENCODE_ENABLE_QUESTION_TOOL"] == "0"  # an explicit user choice is respected
    assert "OPENCODE_ENABLE_QUESTION_TOOL" not in child_environment({}, password=pw, config_content=None)
