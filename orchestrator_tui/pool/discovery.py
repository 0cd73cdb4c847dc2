"""One pool, many front ends: who starts the OpenCode server, who attaches, who stops it.

A pool is a folder (:func:`~orchestrator_tui.pool.registry.pool_dir`). Beside the registry it
holds ``server.json``, the record of the managed server in use (URL, credentials, pid,
version; owner-only, since the password is in it), and ``server.lock``, an ``flock`` taken
around every "read the record, maybe start a server, write the record" step. So:

* the first front end finds no record (or a dead one), starts the server and writes it;
  the others find it and attach: two front ends starting at the same instant start one;
* when the server dies, whichever front end notices first takes the lock, starts a new one
  and rewrites the record; the others take the lock after it and find the new record;
* a front end leaving takes the lock, removes its member row and stops the server only if
  no live member remains: the last one out stops it, whoever started it.

The managed server of a shared pool writes its output to files in the pool folder (not to
pipes), so it keeps running after the front end that started it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from orchestrator_tui.opencode.secret import Secret
from orchestrator_tui.pool.registry import MemberKind, Registry, pid_alive

log = logging.getLogger(__name__)

RECORD_NAME = "server.json"
LOCK_NAME = "server.lock"
#: How long a front end waits for another one that is starting the server.
LOCK_TIMEOUT = 90.0


class PoolLockTimeout(Exception):
    """Another front end held the pool lock for too long."""


@dataclass(frozen=True)
class ServerRecord:
    """The managed OpenCode server a pool uses (``server.json``)."""

    url: str
    username: str
    password: Secret = field(repr=False)
    pid: int
    version: str | None
    cwd: str
    started_at: float
    #: pid of the front end that started it (informative: any member may stop it last).
    started_by: int

    def alive(self) -> bool:
        return pid_alive(self.pid) and _looks_like_opencode(self.pid)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["password"] = self.password.reveal()
        return data

    @classmethod
    def from_json(cls, data: Any) -> ServerRecord:
        """Raises TypeError or ValueError for anything that is not a record."""
        if not isinstance(data, dict) or not isinstance(data.get("password"), str):
            raise ValueError("not a server record")
        return cls(**{**data, "password": Secret(data["password"])})


def _looks_like_opencode(pid: int) -> bool:
    """Guard against pid reuse before we signal a pid read from a file."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc").is_dir()  # no procfs: trust the pid
    return b"opencode" in cmdline or b"serve" in cmdline


class PoolFolder:
    """The pool's folder: the server record and the lock around it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME

    @contextlib.asynccontextmanager
    async def lock(self, timeout: float = LOCK_TIMEOUT) -> AsyncIterator[None]:
        """Exclusive across processes (``flock``); polled so the event loop never blocks."""
        fd = os.open(self.path / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PoolLockTimeout(
                            f"another orchestrator-tui front end held {self.path / LOCK_NAME} for over "
                            f"{timeout:.0f}s; if none is running, delete that file"
                        ) from None
                    await asyncio.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def read_record(self) -> ServerRecord | None:
        try:
            return ServerRecord.from_json(json.loads(self.record_path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable server record %s: %s", self.record_path, exc)
            return None

    def write_record(self, record: ServerRecord) -> None:
        """Atomically, owner-only from the first byte (it holds the server's password)."""
        tmp = self.record_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record.to_json(), fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.record_path)

    def clear_record(self, pid: int | None = None) -> None:
        """Remove the record (only if it still names ``pid``, when given)."""
        if pid is not None:
            current = self.read_record()
            if current is None or current.pid != pid:
                return
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()


async def stop_pid_group(pid: int, grace: float = 3.0) -> None:
    """Stop a server we did not spawn in this process: SIGTERM its group, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        if sig == signal.SIGKILL:
            break
        for _ in range(int(grace / 0.05)):
            if not pid_alive(pid):
                break
            await asyncio.sleep(0.05)
    for _ in range(100):
        if not pid_alive(pid):
            return
        await asyncio.sleep(0.02)


@dataclass
class Membership:
    """This front end's place in a pool: its folder, its registry and its member row."""

    folder: PoolFolder
    registry: Registry
    kind: MemberKind
    member_id: str

    @classmethod
    def join(
        cls,
        registry: Registry,
        kind: MemberKind,
        client_name: str | None = None,
        client_version: str | None = None,
    ) -> Membership:
        member_id = registry.register_member(kind, client_name, client_version)
        return cls(PoolFolder(registry.path.parent), registry, kind, member_id)

    def others(self) -> list[str]:
        """Member ids of the other live front ends."""
        return [m.member_id for m in self.registry.members() if m.member_id != self.member_id]
