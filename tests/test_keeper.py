"""The keeper on its own, watching a stand-in server (``sleep`` leading its own process group).

The keeper does not care what the server is: it needs a pid, its start time, and a folder of
locks. So these run in a second, without OpenCode; tests/test_no_server_left.py runs the same
keeper under every real front end and the real server.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator_tui.opencode import keeper
from orchestrator_tui.opencode.keeper import KeeperSpec, pid_alive
from orchestrator_tui.opencode.process import ServerStartError, start_keeper

RECORD, RECORD_LOCK = "server.json", "server.lock"


def until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def front_end(folder: Path) -> int:
    """One front end's hold on ``alive.lock`` (its own open file description)."""
    return keeper.hold_alive(folder, 1.0)


def watch(folder: Path, proc: subprocess.Popen[bytes], *, record: bool = False) -> subprocess.Popen[bytes]:
    spec = KeeperSpec(folder, RECORD, RECORD_LOCK) if record else KeeperSpec(folder)
    start_time = keeper.start_time_of(proc.pid)
    assert start_time is not None
    started = start_keeper(spec, proc.pid, start_time)
    assert started.stdin is not None
    if record:
        started.stdin.write(json.dumps({"pid": proc.pid, "url": "http://127.0.0.1:1", "password": "p"}).encode())
    started.stdin.close()
    return started


def test_the_server_stops_only_when_the_last_front_end_lets_go(
    tmp_path: Path, server: subprocess.Popen[bytes]
) -> None:
    first, second = front_end(tmp_path), front_end(tmp_path)
    kept = watch(tmp_path, server)
    assert keeper.server_kept(tmp_path)
    os.close(first)
    time.sleep(0.5)  # the keeper acts at once when it acts: give it the chance to be wrong
    assert alive(server), "stopped while a front end still held the lock"
    os.close(second)
    until(lambda: not alive(server), "the server to stop")
    assert kept.wait(5) == 0
    assert not keeper.server_kept(tmp_path)


def test_a_front_end_killed_with_sigkill_counts_as_gone(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, fcntl, os\n"
         f"fd = os.open({str(tmp_path / keeper.ALIVE_LOCK)!r}, os.O_CREAT | os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    kept = watch(tmp_path, server)
    time.sleep(0.3)
    assert alive(server)
    holder.kill()
    holder.wait()
    until(lambda: not alive(server), "the server to stop after its only front end was SIGKILLed")
    assert kept.wait(5) == 0


def test_a_joining_front_end_waits_for_the_stop_then_finds_no_server(
    tmp_path: Path, server: subprocess.Popen[bytes]
) -> None:
    """While a keeper stops the last server it holds alive.lock exclusively: a front end that
    joins then waits until the server is gone (and its record cleared) rather than attach to it."""
    (tmp_path / RECORD).write_text(json.dumps({"pid": server.pid}))
    os.chmod(tmp_path / RECORD, 0o600)
    signal_ignoring = subprocess.Popen(
        ["sh", "-c", "trap '' TERM; sleep 600"], start_new_session=True
    )  # a server that swallows SIGTERM: the stop takes the whole grace
    try:
        until(lambda: keeper.start_time_of(signal_ignoring.pid) is not None, "the stand-in to start")
        fd = front_end(tmp_path)
        kept = watch(tmp_path, signal_ignoring, record=True)
        os.close(fd)
        time.sleep(0.2)  # the keeper now holds alive.lock and waits out the grace
        joined = time.monotonic()
        fd = keeper.hold_alive(tmp_path, 10.0)  # blocks until the keeper is done
        waited = time.monotonic() - joined
        assert signal_ignoring.poll() is not None or not pid_alive(signal_ignoring.pid)
        assert waited > 0.5, f"joined after {waited:.2f}s, while the keeper was still stopping the server"
        assert kept.wait(5) == 0
        os.close(fd)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(signal_ignoring.pid, signal.SIGKILL)
        signal_ignoring.wait()


def test_the_keeper_restores_a_damaged_record_and_clears_it_at_the_end(
    tmp_path: Path, server: subprocess.Popen[bytes]
) -> None:
    fd = front_end(tmp_path)
    kept = watch(tmp_path, server, record=True)
    record = tmp_path / RECORD
    for damage in ("garbage", "deleted", "a dead pid"):
        if damage == "garbage":
            record.write_text('{"pid": ')
        elif damage == "deleted":
            record.unlink(missing_ok=True)
        else:
            record.write_text(json.dumps({"pid": 2**22 + 17}))
        until(lambda: names(record, server.pid), f"the record to be restored ({damage})")
        assert (record.stat().st_mode & 0o777) == 0o600
    # Nothing is restored while the record lock is held (a front end is reading or writing it).
    lock = keeper.open_lock(tmp_path / RECORD_LOCK)
    fcntl.flock(lock, fcntl.LOCK_EX)
    record.unlink()
    time.sleep(0.6)
    assert not record.exists()
    os.close(lock)
    until(record.exists, "the record to be restored once the lock is free")
    os.close(fd)
    until(lambda: not alive(server), "the server to stop")
    assert kept.wait(5) == 0
    assert not record.exists(), "the record of a stopped server was left behind"


def names(record: Path, pid: int) -> bool:
    try:
        return bool(json.loads(record.read_text()).get("pid") == pid)
    except (OSError, ValueError):
        return False


def test_a_server_that_exits_by_itself_ends_its_keeper(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    fd = front_end(tmp_path)
    kept = watch(tmp_path, server, record=True)
    (tmp_path / RECORD).write_text(json.dumps({"pid": server.pid}))
    server.kill()
    server.wait()
    assert kept.wait(5) == 0
    assert (tmp_path / RECORD).exists(), "a dead server's record is the front ends' to replace, under their lock"
    assert not keeper.server_kept(tmp_path)
    os.close(fd)


def test_a_signal_to_the_keeper_stops_its_server(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    fd = front_end(tmp_path)
    kept = watch(tmp_path, server)
    kept.send_signal(signal.SIGTERM)
    until(lambda: not alive(server), "the server to stop with its keeper")
    assert kept.wait(5) == 0
    os.close(fd)


def test_a_pid_that_is_not_the_server_is_never_signalled(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    start_time = keeper.start_time_of(server.pid)
    assert start_time is not None
    with pytest.raises(ServerStartError, match="did not report ready"):
        start_keeper(KeeperSpec(tmp_path), server.pid, start_time + 1)  # a reused pid: another process
    time.sleep(0.3)
    assert alive(server)
    assert "not the server's" in (tmp_path / "keeper.log").read_text()


def test_only_one_keeper_per_folder(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    fd = front_end(tmp_path)
    kept = watch(tmp_path, server)
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        start_time = keeper.start_time_of(other.pid)
        assert start_time is not None
        # A second keeper never takes over the folder (it gives up after keeper.SERVER_LOCK_WAIT).
        with pytest.raises(ServerStartError):
            start_keeper(KeeperSpec(tmp_path), other.pid, start_time)
        assert alive(server) and alive(other)
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
    os.close(fd)
    until(lambda: not alive(server), "the server to stop")
    assert kept.wait(5) == 0
