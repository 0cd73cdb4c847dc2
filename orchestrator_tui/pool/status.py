"""What the pool is waiting for, kept on disk for ``orchestrator-tui status``.

A tmux status bar or a shell prompt runs ``orchestrator-tui status`` every few seconds; it must
answer in well under 150 ms and must never start, or even contact, an OpenCode server. So the
front ends, which already follow the pool live, each keep one small file in the pool folder,
``status/<pid>.json``, saying what they see: the pending requests (permissions and questions)
by id, the busy sessions by id, how many sessions, which server and whether its event stream is
live. The status command only reads those files.

Writing (:class:`StatusFile`, in the dashboard and in the MCP worker): atomically (a temporary
file renamed over the old one), owner-only, at most once a second and only when something
changed (:data:`WRITE_INTERVAL`), and removed when the front end ends cleanly.

Reading (:func:`read_status`): the files of live front ends only. A front end killed with
``kill -9`` leaves its file behind; its pid is dead (or, after a reboot, names another process:
the file records the process's start time too), so the file is ignored, and removed. Ids are
united across the files: two front ends that see the same request count it once.

The reading side imports a few standard modules and nothing else (the writing side loads the
registry and logging when it first writes, in front ends that have both already): the status
command must not load httpx, pydantic, Textual or the MCP SDK, nor even SQLite, to stay well
under its 150 ms (docs/budgets.md, ``benchmarks/status_line.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path

#: ``typing`` itself is not imported at run time (it costs the status command milliseconds).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Literal

    from orchestrator_tui.pool.service import PoolService
    from orchestrator_tui.pool.state import Changes

    FrontEndKind = Literal["human", "agent"]

#: The folder of status files, inside the pool folder.
STATUS_DIR = "status"
#: At most one write per this many seconds (a busy pool changes many times a second).
WRITE_INTERVAL = 1.0
#: The format of the files; a reader skips files of another format.
FORMAT = 1
#: A status file larger than this is not ours (ids of 10,000 busy sessions take ~350 kB).
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Session statuses that count as busy (the pool's ``Status`` values).
BUSY_STATUSES = frozenset({"busy", "retry"})


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of ``pid`` from ``/proc/<pid>/stat``; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            after_comm = fh.read().rsplit(b")", 1)[1].split()  # field 3 ("state") on
        return after_comm[0].decode(), int(after_comm[19])
    except (OSError, IndexError, ValueError):
        return None


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (``/proc/<pid>/stat`` field 22, clock ticks after boot), or None.

    Together with the pid it names one process for good: a pid written before a reboot (or
    reused since) belongs to a process that started at another time. The same field
    :class:`~orchestrator_tui.pool.discovery.ProcessIdentity` uses for the server.
    """
    found = _proc_stat(pid)
    return found[1] if found is not None else None


def front_end_running(pid: int, start_time: int | None) -> bool:
    """Whether the process that wrote a status file still runs: ``pid`` is a live process of ours
    (not a zombie) that started at ``start_time``, not a later process that got the same number.

    :func:`~orchestrator_tui.opencode.keeper.pid_alive`'s test plus the start time, written
    out here because importing the keeper module costs the status command more than the rest of
    its work."""
    if pid <= 0:
        return False
    found = _proc_stat(pid)
    if found is None:
        if os.path.isdir("/proc/self"):
            return False
        try:  # no procfs to tell: that the pid exists and is ours is all we know
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    state, started = found
    try:
        ours = os.stat(f"/proc/{pid}").st_uid == os.geteuid()
    except OSError:
        return False
    return ours and state != "Z" and (start_time is None or started == start_time)


def status_dir(pool_folder: Path) -> Path:
    return pool_folder / STATUS_DIR


# ------------------------------------------------------------------------------------------------
# writing: one file per front end


class StatusFile:
    """This front end's status file (one per process: it is named by the pid), kept current while
    the front end runs and removed at the end.

    ``kind`` is ``human`` for a dashboard, ``agent`` for an MCP worker. Call :meth:`start` from
    inside the event loop (writes are scheduled on it) and :meth:`close` when the front end ends.
    A file that cannot be written is logged once and otherwise ignored: the status line is a
    convenience, never a reason for a front end to fail.
    """

    def __init__(self, pool_folder: Path, service: PoolService, kind: FrontEndKind) -> None:
        self.folder = status_dir(pool_folder)
        self.path = self.folder / f"{os.getpid()}.json"
        self.service = service
        self.kind = kind
        self._start_time = process_start_time(os.getpid())
        self._unsubscribe: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: What was last written, without its time (a write happens only when this changes).
        self._written: dict[str, Any] | None = None
        #: When the pool was last looked at: at most once per WRITE_INTERVAL, written or not (at
        #: 1,000 events/s most changes are streamed text, which this file does not show).
        self._last_look = -1e9
        self._failed = False

    def start(self) -> None:
        import asyncio

        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.service.pool.subscribe(self._on_changes)
        self._flush()  # a front end that runs counts at once, before anything has changed

    def _on_changes(self, changes: Changes) -> None:
        self.changed()

    def changed(self) -> None:
        """Something this file shows may have changed: write it within :data:`WRITE_INTERVAL`."""
        if self._loop is None or self._timer is not None:
            return
        delay = max(0.0, self._last_look + WRITE_INTERVAL - time.monotonic())
        self._timer = self._loop.call_later(delay, self._flush)

    def snapshot(self) -> dict[str, Any]:
        """What this front end sees now (without the time of writing)."""
        pool = self.service.pool
        client = self.service.client
        server = None if client is None else {"url": client.base_url, "connected": pool.connection_state == "connected"}
        # Every server the pool follows (its own and the attached ones), with its sessions.
        per_server: dict[str, int] = {}
        for view in pool.sessions.values():
            per_server[view.server] = per_server.get(view.server, 0) + 1
        servers = []
        for name, link in self.service.links.items():
            link_client = link.client
            url = link_client.base_url if link_client is not None else link.spec.attach_url
            if url is None:  # the pool's own server, not started yet
                continue
            connected = pool.servers.get(name, ("", ""))[0] == "connected"
            servers.append({"url": url, "connected": connected, "sessions": per_server.get(name, 0)})
        return {
            "format": FORMAT,
            "pid": os.getpid(),
            "start_time": self._start_time,
            "kind": self.kind,
            "server": server,
            "servers": servers,
            "sessions": len(pool.sessions),
            "busy": sorted(sid for sid, view in pool.sessions.items() if view.status in BUSY_STATUSES),
            "permissions": list(pool.permissions),
            "questions": list(pool.questions),
        }

    def _flush(self) -> None:
        self._timer = None
        self._last_look = time.monotonic()
        try:
            content = self.snapshot()
            if content == self._written:
                return
            self._write({**content, "updated_at": time.time()})
            self._written = content
        except Exception as exc:  # a status file must never take a front end down
            if not self._failed:
                import logging

                self._failed = True
                logging.getLogger(__name__).warning(
                    "cannot write the status file %s (orchestrator-tui status will not count this front end): %s",
                    self.path,
                    exc,
                )

    def _write(self, data: dict[str, Any]) -> None:
        from orchestrator_tui.pool.registry import private_dir

        private_dir(self.folder)
        tmp = self.folder / f".{os.getpid()}.json.tmp"
        _remove(tmp)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, self.path)

    def close(self) -> None:
        """Stop writing and remove the file (a clean exit leaves nothing to count)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        _remove(self.path)


# ------------------------------------------------------------------------------------------------
# reading: what every live front end of the pool sees, united


class FrontEnd:
    """One live front end, as its status file describes it. (Plain classes here, not dataclasses:
    importing :mod:`dataclasses` alone costs the status command several milliseconds.)"""

    __slots__ = ("connected", "kind", "pid", "server", "sessions", "updated_at")

    def __init__(
        self, pid: int, kind: str, updated_at: float, server: str | None, connected: bool, sessions: int
    ) -> None:
        self.pid = pid
        self.kind = kind
        self.updated_at = updated_at
        self.server = server
        self.connected = connected
        self.sessions = sessions


class PoolStatus:
    """The union of what the pool's live front ends see."""

    def __init__(self) -> None:
        self.front_ends: list[FrontEnd] = []
        self.permission_ids: set[str] = set()
        self.question_ids: set[str] = set()
        self.busy_ids: set[str] = set()
        #: Server URL → whether some front end's event stream from it is live.
        self.servers: dict[str, bool] = {}
        #: Server URL → the most sessions a front end sees on it.
        self.sessions_by_server: dict[str, int] = {}

    @property
    def waiting_ids(self) -> set[str]:
        return self.permission_ids | self.question_ids

    @property
    def sessions(self) -> int:
        return sum(self.sessions_by_server.values())

    @property
    def servers_down(self) -> int:
        return sum(1 for live in self.servers.values() if not live)

    @property
    def running(self) -> bool:
        return bool(self.front_ends)

    def exit_code(self) -> int:
        """0: nothing waiting; 1: something waiting; 2: no front end running (state unknown)."""
        if not self.running:
            return 2
        return 1 if self.waiting_ids else 0

    def line(self) -> str:
        """``3 waiting · 5 busy · 2 servers``, for a status bar."""
        if not self.running:
            return "no front end running"
        servers = len(self.servers)
        parts = [f"{len(self.waiting_ids)} waiting", f"{len(self.busy_ids)} busy"]
        if servers == 0:
            parts.append("no server")
        else:
            down = self.servers_down
            parts.append(f"{servers} server{'s' if servers != 1 else ''}" + (f" ({down} down)" if down else ""))
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "waiting": len(self.waiting_ids),
            "busy": len(self.busy_ids),
            "sessions": self.sessions,
            "servers": len(self.servers),
            "servers_down": self.servers_down,
            "front_ends": [
                {
                    "pid": f.pid,
                    "kind": f.kind,
                    "server": f.server,
                    "connected": f.connected,
                    "sessions": f.sessions,
                    "updated_at": f.updated_at,
                }
                for f in self.front_ends
            ],
            "waiting_ids": sorted(self.waiting_ids),
            "permission_ids": sorted(self.permission_ids),
            "question_ids": sorted(self.question_ids),
            "busy_ids": sorted(self.busy_ids),
        }


def _ids(value: Any) -> set[str]:
    return {item for item in value if isinstance(item, str)} if isinstance(value, list) else set()


def _read_one(path: Path) -> dict[str, Any] | None:
    """A status file's content, or None when it is not a readable status file of ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > MAX_FILE_BYTES:
            return None
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _alive(data: dict[str, Any], pid: int) -> bool:
    """Whether the front end that wrote ``data`` (as ``<pid>.json``) still runs."""
    recorded = data.get("start_time")
    return data.get("pid") == pid and front_end_running(pid, recorded if isinstance(recorded, int) else None)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _remove_stale(path: Path) -> None:
    """Remove the file of a front end that is gone, if it is ours to remove."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_uid == os.geteuid():
            path.unlink()


def read_status(pool_folder: Path) -> PoolStatus:
    """What the pool's live front ends see, united; never creates anything, never blocks.

    Files of front ends that are gone are ignored and removed (they are ours: the pool folder is).
    """
    status = PoolStatus()
    folder = status_dir(pool_folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return status
    for name in sorted(names):
        stem, dot, ext = name.partition(".")
        if ext != "json" or not dot or not stem.isdigit():
            continue
        path = folder / name
        pid = int(stem)
        data = _read_one(path)
        if data is None or not _alive(data, pid):
            if data is not None or not front_end_running(pid, None):
                _remove_stale(path)
            continue
        server = data.get("server")
        url = server.get("url") if isinstance(server, dict) and isinstance(server.get("url"), str) else None
        connected = bool(server.get("connected")) if isinstance(server, dict) else False
        sessions = data.get("sessions") if isinstance(data.get("sessions"), int) else 0
        updated = data.get("updated_at")
        status.front_ends.append(
            FrontEnd(
                pid=pid,
                kind=str(data.get("kind")),
                updated_at=float(updated) if isinstance(updated, int | float) else 0.0,
                server=url,
                connected=connected,
                sessions=sessions,
            )
        )
        status.permission_ids |= _ids(data.get("permissions"))
        status.question_ids |= _ids(data.get("questions"))
        status.busy_ids |= _ids(data.get("busy"))
        servers = data.get("servers")
        if isinstance(servers, list) and servers:
            for entry in servers:
                if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                    count = entry.get("sessions") if isinstance(entry.get("sessions"), int) else 0
                    _count_server(status, entry["url"], bool(entry.get("connected")), count)
        elif url is not None:  # a front end that follows one server
            _count_server(status, url, connected, sessions)
    return status


def _count_server(status: PoolStatus, url: str, connected: bool, sessions: int) -> None:
    status.servers[url] = status.servers.get(url, False) or connected
    status.sessions_by_server[url] = max(status.sessions_by_server.get(url, 0), sessions)
