"""No server left behind: however the front ends of a pool end, its OpenCode server stops.

Every ending a front end can meet, on real processes against the real pinned OpenCode:

* the only dashboard (in a real terminal, tmux): ``q``, SIGTERM, SIGINT, SIGHUP (its terminal
  closed), SIGKILL;
* the only MCP worker: stdin EOF, SIGTERM, SIGINT, SIGKILL. The OOM killer is SIGKILL: it
  ends a process with no chance to run any of its code, which is exactly what SIGKILL does;
* two front ends: killing one never stops the server while the other lives; killing the
  second stops it;
* a real MCP host (OpenCode 1.18.33 itself, its model calling ``orchestrator_run``) killed
  with its whole process group, or alone; and a host whose other child inherited the worker's
  stdin, so that no EOF comes when the host dies (the worker notices its parent change);
* a keeper killed with SIGKILL: the next front end gives the server a new one;
* a ``server.json`` damaged or deleted while the server runs: the next front end attaches to
  that server (the keeper restores the record); no second server starts.

After each, the test counts the ``opencode`` processes left in the test's project (every
server a test starts runs there) and measures how long they took to go once no front end was
alive: the keeper must stop the server within 5 s. Whatever a failing test leaves (servers,
keepers) is SIGKILLed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_dashboard_tmux import COLUMNS, ROWS, Terminal, console_script
from test_mcp_protocol import WORKER, RawWorker
from test_shared_pool import Member

from orchestrator_tui.opencode.client import OpenCodeClient
from orchestrator_tui.opencode.keeper import pid_alive
from orchestrator_tui.pool.discovery import PoolFolder
from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

pytestmark = pytest.mark.real_opencode

#: No front end alive → no OpenCode process: the issue's bound.
STOP_BOUND = 5.0
#: A first OpenCode start on a loaded machine.
SLOW = 90.0


# ------------------------------------------------------------------------------------------------
# processes


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Processes:
    """The ``opencode`` processes and keepers this test started, found in ``/proc``."""

    def __init__(self, root: Path, opencode: str) -> None:
        self.root = root
        self.exe = os.path.realpath(opencode)

    def opencode(self) -> list[int]:
        """Running (not zombie) processes of the OpenCode binary working under the test's folder:
        managed servers, an MCP host, and whatever they spawned."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            cwd = _cwd(pid)
            if exe == self.exe and cwd is not None and self.root in (cwd, *cwd.parents) and _state(pid) != "Z":
                found.append(pid)
        return found

    def servers(self) -> list[int]:
        """The OpenCode processes not started by another one: the servers. A server forks helper
        processes of its own binary, with its arguments, while it works (seen during a turn and
        a directory's first request); those come and go and are not a second server."""
        running = self.opencode()
        return [pid for pid in running if _parent(pid) not in running]

    def keepers(self) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            mine = any(str(self.root).encode() in a for a in argv)
            if b"orchestrator_tui.opencode.keeper" in argv and mine and _state(int(entry)) != "Z":
                found.append(int(entry))
        return found

    def wait_gone(self, since: float, what: str) -> float:
        """Seconds from ``since`` (when the ending was brought about: the key, the signal, the
        closed pipe) until no OpenCode process and no keeper of the test is left."""
        deadline = since + STOP_BOUND + 10
        while self.opencode() or self.keepers():
            assert time.monotonic() < deadline, (
                f"{what}: opencode {self.opencode()} and keepers {self.keepers()} still running "
                f"{time.monotonic() - since:.1f}s after the last front end was ended"
            )
            time.sleep(0.02)
        took = time.monotonic() - since
        print(f"{what}: no opencode process left {took:.2f}s after the ending began")
        assert took <= STOP_BOUND, f"{what}: the server took {took:.2f}s to stop (bound {STOP_BOUND}s)"
        return took

    def kill_all(self) -> None:
        for pid in self.opencode() + self.keepers():
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path, opencode_binary: str) -> Iterator[Processes]:
    found = Processes(tmp_path, opencode_binary)
    yield found
    found.kill_all()


def wait_until(predicate: Callable[[], object], what: str, timeout: float = SLOW) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.02)


def wait_dead(pid: int, what: str, timeout: float = 30.0) -> None:
    """Wait until ``pid`` (not necessarily our child) is gone."""
    wait_until(lambda: not pid_alive(pid), what, timeout)


@pytest.fixture
def env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    """A front end's environment: the test's own pool folder, the scripted model."""
    environment = dict(opencode_env, OPENCODE_CONFIG_CONTENT=model_config())
    for var in ("TMUX", "TMUX_PANE", "ORCHESTRATOR_TUI_ATTACH", "OPENCODE_SERVER_PASSWORD"):
        environment.pop(var, None)
    return environment


def pool_folder(env: dict[str, str]) -> PoolFolder:
    return PoolFolder(Path(env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default")


# ------------------------------------------------------------------------------------------------
# the only dashboard


DASHBOARD_ENDINGS = ["q", "SIGTERM", "SIGINT", "SIGHUP (terminal closed)", "SIGKILL"]


@pytest.mark.parametrize("ending", DASHBOARD_ENDINGS)
def test_the_only_dashboard_ending_stops_the_server(
    ending: str, env: dict[str, str], project_dir: Path, tmp_path: Path, procs: Processes
) -> None:
    terminal = Terminal(tmp_path)
    try:
        app = shlex.quote(console_script())
        terminal.start(f"cd {shlex.quote(str(project_dir))} && exec {app}", env)
        assert terminal.size() == (COLUMNS, ROWS)
        terminal.wait(lambda s: " live" in s, "the dashboard to connect to OpenCode")
        assert len(procs.opencode()) >= 1 and len(procs.keepers()) == 1
        dashboard = int(terminal.flag("pane_pid"))
        record = pool_folder(env).read_record()
        assert record is not None and pid_alive(record.pid)

        triggered = time.monotonic()
        if ending == "q":
            terminal.keys("q")
        elif ending.startswith("SIGHUP"):
            terminal.kill()  # the terminal goes: the kernel hangs up on the app
        else:
            os.kill(dashboard, getattr(signal, ending))
        wait_dead(dashboard, f"the dashboard to end by {ending}")
        procs.wait_gone(triggered, f"dashboard {ending}")
        assert procs.opencode() == []
        assert pool_folder(env).read_record() is None, "server.json of a stopped server was left behind"
    finally:
        terminal.kill()


# ------------------------------------------------------------------------------------------------
# the only MCP worker


WORKER_ENDINGS = ["stdin EOF", "SIGTERM", "SIGINT", "SIGKILL (as the OOM killer)"]


@pytest.mark.parametrize("ending", WORKER_ENDINGS)
def test_the_only_worker_ending_stops_the_server(
    ending: str, env: dict[str, str], project_dir: Path, tmp_path: Path, procs: Processes
) -> None:
    worker = RawWorker(env, project_dir, tmp_path / "worker-stderr.log")
    try:
        worker.initialize()
        assert worker.call("list_commands", {})["isError"] is False
        assert len(procs.opencode()) >= 1 and len(procs.keepers()) == 1
        triggered = time.monotonic()
        if ending == "stdin EOF":
            worker.close_stdin()
        else:
            os.kill(worker.pid, getattr(signal, ending.split()[0]))
        worker.proc.wait(30)
        procs.wait_gone(triggered, f"worker {ending}")
        assert procs.opencode() == []
        assert pool_folder(env).read_record() is None
    finally:
        worker.stop()


# ------------------------------------------------------------------------------------------------
# two front ends


def test_the_server_lives_while_any_front_end_does(env: dict[str, str], project_dir: Path, procs: Processes) -> None:
    members: list[Member] = []
    try:
        first = Member(env, project_dir)
        members.append(first)
        started = first.read()
        second = Member(env, project_dir)
        members.append(second)
        assert second.read() == started
        worker = RawWorker(env, project_dir, project_dir.parent / "worker-stderr.log")
        try:
            worker.initialize()
            assert worker.call("list_commands", {})["isError"] is False
            # The worker attached to the same server: still one server, one keeper.
            assert len(procs.keepers()) == 1

            # kill -9 the front end that started the server, then the worker.
            first.proc.kill()
            first.proc.wait()
            os.kill(worker.pid, signal.SIGKILL)
            worker.proc.wait()
            # The keeper acts the moment the lock is free; give it time to misbehave all the same.
            time.sleep(1.0)
            assert pid_alive(started["pid"]), "the server was stopped while a front end still lived"
            second.send("acquire")
            assert second.read() == started, "the surviving front end lost its server"
        finally:
            worker.stop()

        triggered = time.monotonic()
        second.proc.kill()
        second.proc.wait()
        procs.wait_gone(triggered, "two front ends, both killed")
        assert pool_folder(env).read_record() is None
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait()


def test_a_front_end_joining_as_the_last_leaves_gets_a_working_server(
    env: dict[str, str], project_dir: Path, procs: Processes
) -> None:
    """The join/leave race: a front end starts the instant the last one quits. Either it is
    counted before the keeper's lock is granted (the server stays) or it waits for the keeper to
    finish (and starts a new one); it always ends up on one running server."""
    members: list[Member] = []
    try:
        current = Member(env, project_dir)
        members.append(current)
        assert "pid" in current.read()
        for _round in range(3):
            current.send("quit")
            joining = Member(env, project_dir)
            members.append(joining)
            got = joining.read()
            assert "pid" in got, got
            current.proc.wait(30)
            # Whatever the keeper did meanwhile, the joined front end's server runs, and it is the
            # only one: a stopped server's successor never has a twin.
            time.sleep(0.5)
            joining.send("acquire")
            again = joining.read()
            assert "pid" in again and pid_alive(again["pid"]), again
            assert len(procs.keepers()) == 1, procs.keepers()
            current = joining
        triggered = time.monotonic()
        current.send("quit")
        current.proc.wait(30)
        procs.wait_gone(triggered, "join/leave race")
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait()


def test_a_server_whose_keeper_was_killed_gets_a_new_one(
    env: dict[str, str], project_dir: Path, procs: Processes
) -> None:
    """A keeper killed with SIGKILL leaves its server unwatched: the next front end to join
    gives the server a new keeper (never a second server), and the server still stops with
    the last front end."""
    members: list[Member] = []
    try:
        first = Member(env, project_dir)
        members.append(first)
        started = first.read()
        (keeper,) = procs.keepers()
        os.kill(keeper, signal.SIGKILL)
        wait_until(lambda: procs.keepers() == [], "the keeper to die")
        second = Member(env, project_dir)
        members.append(second)
        assert second.read() == started
        assert len(procs.keepers()) == 1, "the orphaned server got no new keeper"
        first.proc.kill()
        first.proc.wait()
        triggered = time.monotonic()
        second.proc.kill()
        second.proc.wait()
        procs.wait_gone(triggered, "adopted server, both front ends killed")
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait()


# ------------------------------------------------------------------------------------------------
# item 7: a damaged record while the server runs


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_a_damaged_record_never_starts_a_second_server(
    damage: str, env: dict[str, str], project_dir: Path, procs: Processes
) -> None:
    folder = pool_folder(env)
    members: list[Member] = []
    try:
        first = Member(env, project_dir)
        members.append(first)
        started = first.read()
        servers_before = procs.servers()
        if damage == "garbage":
            folder.record_path.write_text('{"url": "http://127.0.0.1:1", "pass')  # cut short
        else:
            folder.record_path.unlink()
        second = Member(env, project_dir)
        members.append(second)
        assert second.read() == started, "a second server was started beside the running one"
        assert procs.servers() == servers_before
        record = folder.read_record()
        assert record is not None and record.pid == started["pid"], "the keeper did not restore the record"
        assert oct(folder.record_path.stat().st_mode & 0o777) == oct(0o600)
        first.leave()
        triggered = time.monotonic()
        second.leave()
        procs.wait_gone(triggered, f"record {damage}")
    finally:
        for member in members:
            if member.proc.poll() is None:
                member.proc.kill()
                member.proc.wait()


# ------------------------------------------------------------------------------------------------
# a real MCP host: OpenCode 1.18.33 with orchestrator-tui in its "mcp" configuration


@pytest.mark.parametrize("kill", ["SIGKILL to the host's process group", "SIGKILL to the host alone"])
def test_a_killed_mcp_host_leaves_no_server(
    kill: str,
    env: dict[str, str],
    project_dir: Path,
    tmp_path: Path,
    scripted_model: ScriptedModelServer,
    procs: Processes,
) -> None:
    """OpenCode starts the worker in its own process group, on a pipe nothing else holds: killed
    alone, the host closes the worker's stdin; killed with its group, the worker dies with it,
    and only the keeper is left to stop the worker's OpenCode (which has a session of its own)."""
    worker_env = {k: v for k, v in env.items() if k.startswith(("XDG_", "OPENCODE_", "ORCHESTRATOR_TUI_"))}
    worker_env.update(PATH=env["PATH"], HOME=env.get("HOME", str(tmp_path)))
    config = opencode_config(scripted_model.base_url, permission={"*": "allow", "external_directory": "ask"})
    config["mcp"] = {"orchestrator": {"type": "local", "command": [str(WORKER), "mcp"], "environment": worker_env}}
    host_env = dict(env, OPENCODE_CONFIG_CONTENT=json.dumps(config), OPENCODE_SERVER_PASSWORD="host-test")
    port = _free_port()
    host = subprocess.Popen(
        [env["OPENCODE_BINARY"], "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=project_dir,
        env=host_env,
        stdin=subprocess.DEVNULL,
        stdout=(tmp_path / "host.out").open("wb"),
        stderr=(tmp_path / "host.err").open("wb"),
        start_new_session=True,
    )
    try:
        wait_until(lambda: b"listening on" in (tmp_path / "host.out").read_bytes(), "the MCP host to listen")
        answer = asyncio.run(_host_calls_orchestrator_run(port, project_dir))
        assert "hello" in answer, answer
        worker = _worker_of(host.pid)
        assert len(procs.keepers()) == 1
        triggered = time.monotonic()
        if "group" in kill:
            os.killpg(host.pid, signal.SIGKILL)
        else:
            os.kill(host.pid, signal.SIGKILL)
        host.wait(10)
        wait_dead(worker, "the worker to end with its host")
        procs.wait_gone(triggered, f"MCP host, {kill}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.pid, signal.SIGKILL)
        host.wait(10)


LEAKY_HOST = """
import json, os, subprocess, sys, time
read_end, write_end = os.pipe()
out = open(sys.argv[2], "wb")
worker = subprocess.Popen([sys.argv[1], "mcp"], stdin=read_end, stdout=out)
# A child of the host that inherited the worker's stdin: the pipe stays open after the host dies.
subprocess.Popen(["sleep", "600"], pass_fds=(write_end,))
os.close(read_end)
for message in (
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
     "capabilities": {}, "clientInfo": {"name": "leaky-host", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_commands", "arguments": {}}},
):
    os.write(write_end, json.dumps(message).encode() + b"\\n")
print(worker.pid, flush=True)
time.sleep(600)
"""


def test_a_worker_whose_stdin_outlives_its_host_still_ends(
    env: dict[str, str], project_dir: Path, tmp_path: Path, procs: Processes
) -> None:
    """A host that lets another of its children inherit the worker's stdin pipe: when the host
    dies, no EOF comes. The worker sees its parent change, ends, and its server is stopped."""
    replies = tmp_path / "worker-stdout.jsonl"
    host = subprocess.Popen(
        [sys.executable, "-c", LEAKY_HOST, str(WORKER), str(replies)],
        cwd=project_dir,
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert host.stdout is not None
        worker = int(host.stdout.readline())
        wait_until(lambda: b'"id":2' in replies.read_bytes().replace(b" ", b""), "the worker's list_commands reply")
        assert len(procs.opencode()) >= 1 and len(procs.keepers()) == 1
        triggered = time.monotonic()
        host.kill()  # the host alone; its `sleep` child keeps the worker's stdin open
        host.wait()
        wait_dead(worker, "the worker to notice its host is gone")
        procs.wait_gone(triggered, "MCP host killed, worker's stdin held open by the host's other child")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host.pid, signal.SIGKILL)
        host.wait()


async def _host_calls_orchestrator_run(port: int, project: Path) -> str:
    """Have the host's model call ``orchestrator_run``; the nested session's answer."""
    client = OpenCodeClient(f"http://127.0.0.1:{port}", auth=("opencode", "host-test"), directory=str(project))
    try:
        session = await client.create_session(title="host")
        message = json.dumps({"message": "Say exactly 'hello' and nothing else."})
        await client.prompt_async(session.id, f"CALL orchestrator_run {message}")
        deadline = time.monotonic() + SLOW
        while time.monotonic() < deadline:
            for part in _parts(await client.messages(session.id)):
                state = part.get("state") or {}
                if part.get("tool") == "orchestrator_run" and state.get("status") in ("completed", "error"):
                    return str(state.get("output") or state.get("error"))
            await asyncio.sleep(0.2)
        raise AssertionError("the host's orchestrator_run call did not finish")
    finally:
        await client.aclose()


def _parts(messages: list[Any]) -> list[dict[str, Any]]:
    parts = []
    for message in messages:
        data = message.model_dump() if hasattr(message, "model_dump") else message
        parts.extend(p for p in data.get("parts") or [] if isinstance(p, dict))
    return parts


def _worker_of(host: int) -> int:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == host and any(a.endswith(b"orchestrator-tui") for a in argv) and b"mcp" in argv:
            return int(entry)
    raise AssertionError(f"no orchestrator-tui mcp worker below the host {host}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


