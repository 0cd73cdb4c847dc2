"""One pool, many front ends: discovery, one server, the last one out, recovery.

Front ends here are real processes (tests/pool_member.py joins the pool exactly as the
dashboard and the MCP worker do) against the real pinned OpenCode. Every OpenCode server a
test sees is SIGKILLed (its whole group) at teardown if it still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.opencode.keeper import pid_alive
from orchestrator_tui.pool import registry as registry_module
from orchestrator_tui.pool.discovery import PoolFolder
from orchestrator_tui.pool.registry import PoolStateError, Registry

MEMBER = Path(__file__).with_name("pool_member.py")

pytestmark = pytest.mark.real_opencode
#: Kill → both front ends working again. The issue asks for 5 s on a quiet machine, and
#: benchmarks/recovery.py measures it; a test on a busy 2-core CI box gets a wider margin
#: (an OpenCode start alone can take several seconds there).
RECOVERY_BOUND = 15.0


class Member:
    """One front-end process of the pool, driven line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER), str(cwd)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def read(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer from pool member {self.proc.pid}; stderr: {self.stderr()}") from None
        return json.loads(line)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def leave(self, timeout: float = 15.0) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.send("quit")
        self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]


@pytest.fixture
def pool_env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    return {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config()}


@pytest.fixture
def members(pool_env: dict[str, str], project_dir: Path) -> Iterator[Callable[[], Member]]:
    started: list[Member] = []
    servers: set[int] = set()

    def start() -> Member:
        member = Member(pool_env, project_dir)
        started.append(member)
        return member

    start.servers = servers  # type: ignore[attr-defined]
    yield start
    for member in started:
        if member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait()
    record = PoolFolder(Path(pool_env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default").read_record()
    for pid in servers | ({record.pid} if record else set()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def folder_of(env: dict[str, str]) -> PoolFolder:
    return PoolFolder(Path(env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default")


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_second_front_end_attaches_and_the_last_one_out_stops_the_server(
    members: Callable[[], Member], pool_env: dict[str, str]
) -> None:
    first = members()
    a = first.read()
    members.servers.add(a["pid"])  # type: ignore[attr-defined]
    assert a["mode"] == "managed"
    second = members()
    b = second.read()
    assert b == a, "the second front end must attach to the first one's server"
    record = folder_of(pool_env).read_record()
    assert record is not None and record.pid == a["pid"]
    assert (folder_of(pool_env).record_path.stat().st_mode & 0o777) == 0o600

    # The starter leaves; the server keeps running for the other front end, which still works.
    first.leave()
    assert pid_alive(a["pid"]), "the server must outlive the front end that started it while others use it"
    second.send("acquire")
    assert second.read() == a
    # The last one out stops it and clears the record.
    second.leave()
    assert wait_dead(a["pid"]), "the last front end out must stop the server"
    assert folder_of(pool_env).read_record() is None


def test_front_ends_starting_at_once_start_one_server(members: Callable[[], Member], pool_env: dict[str, str]) -> None:
    """Two front ends started together end on one server, which stops once both have left.

    Three rounds: the first in a fresh pool folder (both set the registry up at once), the
    others right after the previous round's server stopped (its keeper may still be clearing
    the record). More rounds repeat the same interleaving: measured over 20 rounds, the two
    asked for the pool lock 4-549 ms apart and the second one asked every time while the
    first held it to start the server (3.3-7.0 s), then attached.
    """
    rounds = 3
    for round_ in range(rounds):
        pair = [members(), members()]
        seen = [m.read() for m in pair]
        members.servers.update(s["pid"] for s in seen if "pid" in s)  # type: ignore[attr-defined]
        assert all("pid" in s for s in seen), seen
        assert seen[0]["pid"] == seen[1]["pid"], f"round {round_}: two servers started: {seen}"
        for m in pair:
            m.send("quit")
        for m in pair:
            m.proc.wait(timeout=15)
        assert wait_dead(seen[0]["pid"]), f"round {round_}: the server outlived both front ends"


async def test_killed_server_is_restarted_once_and_both_follow(
    members: Callable[[], Member], pool_env: dict[str, str], project_dir: Path
) -> None:
    """Kill the server under two front ends (one in this process, as the dashboard is, with its
    event stream): one restarts it, the other follows the record, both work within 5 s."""
    from orchestrator_tui.pool.discovery import Membership
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    other = members()
    first = other.read()
    members.servers.add(first["pid"])  # type: ignore[attr-defined]
    registry = Registry.for_pool("default", pool_env)
    service = PoolService(
        ServerSpec(cwd=project_dir, env=pool_env), membership=Membership.join(registry, "human", "test")
    )
    try:
        snapshot = await service.acquire()
        assert snapshot.pid == first["pid"]
        assert await service.wait_stream(10)

        os.killpg(first["pid"], signal.SIGKILL)
        killed = time.monotonic()
        # Nobody calls anything here: the dashboard side notices through its event stream.
        while service.handle.current is None or service.handle.current.pid == first["pid"]:
            assert time.monotonic() - killed < RECOVERY_BOUND, "the in-process front end did not recover"
            await asyncio.sleep(0.05)
        assert await service.wait_stream(RECOVERY_BOUND - (time.monotonic() - killed))
        new_pid = service.handle.current.pid
        members.servers.add(new_pid)  # type: ignore[attr-defined]
        # The other front end's next call works, on the same new server (never a second one).
        other.send("acquire")
        again = await asyncio.to_thread(other.read)
        assert again["pid"] == new_pid, (again, new_pid)
        took = time.monotonic() - killed
        print(f"both front ends worked again {took:.2f} s after the kill")
        assert took < RECOVERY_BOUND, f"both front ends must work again within {RECOVERY_BOUND} s"
        record = folder_of(pool_env).read_record()
        assert record is not None and record.pid == new_pid
    finally:
        await service.close()
        registry.close()
        other.leave()
    assert wait_dead(new_pid)


_OPEN_MANY = """
import os, sys
from pathlib import Path
from orchestrator_tui.pool.registry import Registry
for i in range(int(sys.argv[2])):
    registry = Registry(Path(sys.argv[1]))
    registry.record_launch(f"ses_{os.getpid()}_{i}", "agent", "stress")
    registry.close()
"""


def test_front_ends_opening_and_closing_the_registry_together_all_get_in(tmp_path: Path) -> None:
    """CI once saw a front end refused with "database is locked" while another opened or
    closed the same registry: setup and the closing checkpoint are one process at a time."""
    folder = tmp_path / "pool"
    folder.mkdir(mode=0o700)
    path = folder / "registry.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", _OPEN_MANY, str(path), "25"], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    registry = Registry(path)
    try:
        assert registry._db.execute("SELECT COUNT(*) FROM launches").fetchone()[0] == 6 * 25
    finally:
        registry.close()


def test_a_registry_whose_setup_stays_locked_is_refused_with_who_holds_it_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the setup lock's timeout the user is told another front end holds the registry, not
    that it is damaged: the error carries SQLite's BUSY code, which is what tells them apart."""
    folder = tmp_path / "pool"
    folder.mkdir(mode=0o700)
    path = folder / "registry.sqlite3"
    Registry(path).close()
    monkeypatch.setattr(registry_module, "SETUP_LOCK_TIMEOUT", 0.2)
    holder = os.open(path.with_name(path.name + ".setup-lock"), os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another front end in the middle of its setup
        with pytest.raises(PoolStateError) as refused:
            Registry(path)
    finally:
        os.close(holder)
    assert f"the pool's registry {path} is locked by another process (database is locked)" in str(refused.value)
    assert refused.value.fix.startswith("wait for the other orchestrator-tui front end of this pool to finish")
    assert sorted(p.name for p in folder.iterdir()) == ["registry.sqlite3", "registry.sqlite3.setup-lock"]
