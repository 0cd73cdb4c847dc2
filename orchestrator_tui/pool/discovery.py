"""One pool, many front ends: who starts the OpenCode server, who attaches, who stops it.

A pool is a folder (:func:`~orchestrator_tui.pool.registry.pool_dir`). Beside the registry it
holds ``server.json``, the record of the managed server in use (URL, credentials, pid,
version; owner-only, since the password is in it), ``server.lock``, an ``flock`` taken around
every "read the record, maybe start a server, write the record" step, and the two locks of the
server's keeper (:mod:`orchestrator_tui.opencode.keeper`): ``alive.lock``, which every front end
holds shared for its whole life, and ``server-alive.lock``, which the keeper holds while the
server runs. So:

* the first front end finds no record and no running server, starts the server (and its
  keeper) and writes the record; the others find it and attach: two front ends starting at the
  same instant start one;
* when the server dies, whichever front end notices first takes the lock, starts a new one
  and rewrites the record; the others take the lock after it and find the new record;
* a front end leaving (or dying, however) only lets go of ``alive.lock``: the keeper stops the
  server once no front end holds it, and clears the record. Nobody counts pids for that;
* a record that cannot be read while ``server-alive.lock`` is held never leads to a second
  server: the front end waits for the keeper to restore the record (or fails saying so).

The managed server of a shared pool writes its output to files in the pool folder (not to
pipes), so it keeps running after the front end that started it exits. What stays on disk
after the last front end: the registry, the policy, the lock files (empty) and the logs
(``opencode.*.log``, ``keeper.log``); never ``server.json`` of a stopped server.

Nothing in the folder is trusted for being there: the folder and every file in it must be ours,
not links, and not writable by others (``server.json`` not even readable), or it is refused with
`UnsafePoolPath`. And a pid read from ``server.json`` is only acted upon (attached to, signalled)
when it provably still is the server recorded: the record keeps the process's executable and start
time, and the process must lead its own group and listen on the recorded port (`ProcessIdentity`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator_tui.opencode import keeper
from orchestrator_tui.opencode.keeper import KeeperSpec, pid_alive
from orchestrator_tui.opencode.secret import Secret
from orchestrator_tui.pool.registry import (
    MemberKind,
    PoolStateError,
    Registry,
    check_private_file,
    database_problem,
    private_dir,
)

log = logging.getLogger(__name__)

RECORD_NAME = "server.json"
LOCK_NAME = "server.lock"
#: The only host a pool's server listens on.
HOSTNAME = "127.0.0.1"
#: How long a front end waits for another one that is starting the server.
LOCK_TIMEOUT = 90.0


class PoolLockTimeout(Exception):
    """Another front end held the pool lock for too long."""


@dataclass(frozen=True)
class ProcessIdentity:
    """What makes a pid *this* process rather than whatever holds the number now: its owner (us),
    its executable and its start time (``/proc/<pid>/stat`` field 22, clock ticks after boot),
    which no later process with a reused pid can share."""

    pid: int
    exe: str
    start_time: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """Read from ``/proc``; None when the process is gone, a zombie, another user's, or when
        there is no ``/proc`` to tell."""
        if pid <= 0 or not pid_alive(pid) or (stat := _proc_stat(pid)) is None:
            return None
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return None
        return cls(pid, exe, stat[2])

    def leads_its_group(self) -> bool:
        """Still this very process, and the leader of its process group (we start the server in
        a group of its own: the group is then the server and what it spawned)."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] == self.pid and ProcessIdentity.of(self.pid) == self

    def listens_on(self, port: int) -> bool:
        """Whether a process of this group holds the socket listening on ``port``."""
        inodes = _listening_inodes(port)
        return bool(inodes) and any(_holds_socket(pid, inodes) for pid in _group_members(self.pid))


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time) from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            after_comm = fh.read().rsplit(b")", 1)[1].split()  # field 3 ("state") on
        return after_comm[0].decode(), int(after_comm[2]), int(after_comm[19])
    except (OSError, IndexError, ValueError):
        return None


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (IPv4 and IPv6) in our network namespace."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()  # sl, local address, remote address, state ("0A": LISTEN), ..., inode
            if len(columns) > 9 and columns[3] == "0A" and int(columns[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(columns[9])
    return inodes


def _group_members(pgid: int) -> list[int]:
    """The leader first, then the other processes of its group."""
    members = [pgid]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pgid and (stat := _proc_stat(int(entry))) and stat[1] == pgid:
            members.append(int(entry))
    return members


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class ServerRecord:
    """The managed OpenCode server a pool uses (``server.json``).

    ``exe`` and ``start_time`` identify the process ``pid`` named when the record was written; a
    record without them (written by an older version) proves nothing: its server is never
    signalled, only replaced."""

    url: str
    username: str
    password: Secret = field(repr=False)
    pid: int
    version: str | None
    cwd: str
    started_at: float
    #: pid of the front end that started it (informative: any member may stop it last).
    started_by: int
    exe: str | None = None
    start_time: int | None = None

    @property
    def port(self) -> int | None:
        """The port of ``url``, when it is a loopback URL (the only kind we start)."""
        try:
            parts = urlsplit(self.url)
            return parts.port if parts.hostname == HOSTNAME else None
        except ValueError:
            return None

    def identity(self) -> ProcessIdentity | None:
        if self.exe is None or self.start_time is None:
            return None
        return ProcessIdentity(self.pid, self.exe, self.start_time)

    def alive(self) -> bool:
        """Whether the recorded server is running and provably the one we recorded: ``pid`` is a
        process of ours with the recorded executable and start time, leading its own group, and
        the group listens on the recorded port. Never true for an old record."""
        identity, port = self.identity(), self.port
        return (
            identity is not None and port is not None and identity.leads_its_group() and identity.listens_on(port)
        )

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


class PoolFolder:
    """The pool's folder: the server record and the lock around it. Everything in it is checked
    to be ours before it is trusted (`UnsafePoolPath` otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = private_dir(path)

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME

    def keeper_spec(self) -> KeeperSpec:
        """Where the keeper of this pool's server watches, and the record it guards."""
        return KeeperSpec(self.path, record=RECORD_NAME, record_lock=LOCK_NAME)

    def hold_alive(self, timeout: float = LOCK_TIMEOUT) -> int:
        """Count this process as a front end of the pool for as long as the returned fd stays open
        (a shared ``flock`` on ``alive.lock``; the kernel drops it however the process ends).
        Waits while a keeper is stopping the pool's last server. Raises `PoolStateError`."""
        path = self.path / keeper.ALIVE_LOCK
        os.close(_open_private(path, os.O_CREAT | os.O_RDWR, readable_by_others=True))  # ours, not a link
        try:
            return keeper.hold_alive(self.path, timeout)
        except TimeoutError:
            raise PoolStateError(
                f"{path} stayed locked for over {timeout:.0f}s: the keeper of this pool's OpenCode server did not "
                "finish stopping it",
                f"see {self.path / 'keeper.log'}; stop that keeper (its pid is in "
                f"{self.path / keeper.SERVER_ALIVE_LOCK}) and start again",
            ) from None

    def server_kept(self) -> bool:
        """Whether the pool's server is running (its keeper holds ``server-alive.lock``), whatever
        ``server.json`` says. Ask it under `lock`."""
        path = self.path / keeper.SERVER_ALIVE_LOCK
        with contextlib.suppress(FileNotFoundError):
            os.close(_open_private(path, os.O_RDONLY, readable_by_others=True))  # ours, not a link
        return keeper.server_kept(self.path)

    @contextlib.asynccontextmanager
    async def lock(self, timeout: float = LOCK_TIMEOUT) -> AsyncIterator[None]:
        """Exclusive across processes (``flock``); polled so the event loop never blocks."""
        fd = _open_private(self.path / LOCK_NAME, os.O_CREAT | os.O_RDWR, readable_by_others=True)
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
        """The record, or None when there is none (or it is unreadable garbage). A record that is
        a link, someone else's, or readable by others raises `UnsafePoolPath`."""
        try:
            fd = _open_private(self.record_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            with os.fdopen(fd, "rb") as fh:
                return ServerRecord.from_json(json.loads(fh.read()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable server record %s: %s", self.record_path, exc)
            return None

    def write_record(self, record: ServerRecord) -> bytes:
        """Atomically, owner-only from the first byte (it holds the server's password). Returns
        what was written (for the server's keeper)."""
        data = json.dumps(record.to_json()).encode()
        tmp = self.record_path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, self.record_path)
        return data

    def clear_record(self, pid: int | None = None) -> None:
        """Remove the record (only if it still names ``pid``, when given)."""
        if pid is not None:
            current = self.read_record()
            if current is None or current.pid != pid:
                return
        with contextlib.suppress(FileNotFoundError):
            self.record_path.unlink()


def _open_private(path: Path, flags: int, *, readable_by_others: bool = False) -> int:
    """Open a file of the pool folder without following links, and refuse (`UnsafePoolPath`)
    anything but a regular file of ours. Raises FileNotFoundError when it is absent."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENXIO and path.exists()):
            check_private_file(path, os.lstat(path), readable_by_others=readable_by_others)
        raise
    try:
        check_private_file(path, os.fstat(fd), readable_by_others=readable_by_others)
    except BaseException:
        os.close(fd)
        raise
    return fd


async def stop_recorded_server(record: ServerRecord, grace: float = 3.0) -> bool:
    """Stop a pool server we did not spawn in this process: SIGTERM its group, then SIGKILL it.

    Only a group we can prove is that server's (`ServerRecord.alive`) is signalled, and it is
    proved again right before each signal: a pid from a file may name anybody's process by now.
    Returns False (and signals nothing) when the proof fails."""
    identity = record.identity()
    if identity is None or not record.alive():
        log.warning("not stopping pid %d: it cannot be proven to be the pool's OpenCode server", record.pid)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        # After SIGTERM the server may have closed its socket already: the executable and the
        # start time still prove that the group is the one we saw listening.
        if not identity.leads_its_group():
            return True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(identity.pid, sig)
        if sig == signal.SIGKILL:
            break
        for _ in range(int(grace / 0.05)):
            if not pid_alive(identity.pid):
                break
            await asyncio.sleep(0.05)
    for _ in range(100):
        if not pid_alive(identity.pid):
            break
        await asyncio.sleep(0.02)
    return True


@dataclass
class Membership:
    """This front end's place in a pool: its folder, its registry, its member row (for display:
    who is attached) and its hold on ``alive.lock`` (what keeps the pool's server running)."""

    folder: PoolFolder
    registry: Registry
    kind: MemberKind
    member_id: str
    alive_fd: int | None = None

    @classmethod
    def join(
        cls,
        registry: Registry,
        kind: MemberKind,
        client_name: str | None = None,
        client_version: str | None = None,
        directory: str | None = None,
    ) -> Membership:
        folder = PoolFolder(registry.path.parent)
        # Counted as alive before anything else: before we can start a server, and before we read
        # the record (a keeper stopping the last server finishes first).
        alive_fd = folder.hold_alive()
        try:
            member_id = registry.register_member(kind, client_name, client_version, directory)
        except BaseException:
            os.close(alive_fd)
            raise
        return cls(folder, registry, kind, member_id, alive_fd)

    def others(self) -> list[str]:
        """Member ids of the other live front ends."""
        return [m.member_id for m in self.registry.members() if m.member_id != self.member_id]

    def leave(self) -> None:
        """Remove the member row and let go of ``alive.lock``: if we were the last front end, the
        keeper stops the server now."""
        with contextlib.suppress(sqlite3.Error):
            self.registry.remove_member(self.member_id)
        if self.alive_fd is not None:
            os.close(self.alive_fd)
            self.alive_fd = None


def join_pool(
    registry: Registry,
    kind: MemberKind,
    client_name: str | None = None,
    client_version: str | None = None,
    directory: str | None = None,
) -> Membership:
    """Join the pool as a front end.

    A registry that refuses the member row (locked, read-only) raises
    :class:`~orchestrator_tui.pool.registry.PoolStateError` (and is closed), the one error both
    front ends fail closed on.
    """
    try:
        return Membership.join(registry, kind, client_name, client_version, directory)
    except sqlite3.Error as exc:
        registry.close()
        raise database_problem(registry.path, exc) from exc
    except PoolStateError:
        registry.close()
        raise
