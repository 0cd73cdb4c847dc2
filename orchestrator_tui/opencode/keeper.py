"""The keeper: the small process that stops a managed ``opencode serve`` once no front end is left.

A front end can end in ways that run none of its code: ``kill -9``, the OOM killer, a closed
terminal, an MCP host that takes its whole process group down. Whatever the front end's last
act, the kernel releases the locks it held. So liveness here is a lock, not a pid table:

* every front end of a server holds a shared ``flock`` on ``alive.lock`` in the server's folder
  for its whole life (opened close-on-exec: no child inherits it and keeps it held);
* one keeper per server, started right after the server (its own session, stdlib only, nothing
  tied to the front end's terminal or pipes), blocks on an *exclusive* ``flock`` of that file. It
  is granted exactly when no front end holds the file any more; then the keeper SIGTERMs the
  server's process group, SIGKILLs it after a grace (a first SIGTERM can be swallowed), clears
  the record naming the server, releases the lock and exits;
* the keeper holds ``server-alive.lock`` exclusively for as long as its server lives, so "a
  server of this folder is running" is a kernel fact too: a front end that cannot read the
  record while that lock is held must not start a second server (it waits for the keeper,
  which restores a damaged or deleted record from the copy it read when the server was new);
* the keeper exits by itself when the server dies on its own (a ``pidfd`` says so at once).

Races: a front end takes its shared lock *before* it starts a server (the keeper can never see
"nobody" before its starter is counted), and a front end joining takes its shared lock before
it reads the record, so either it is counted before the keeper's exclusive lock is granted (the
server stays), or it waits until the keeper has stopped the server and cleared the record (and
then starts a new one). A SIGTERM, SIGINT or SIGHUP to the keeper itself stops its server too:
no server runs unwatched.

Nothing secret reaches the keeper by argv or environment: the front end that wrote the record
hands the keeper a copy on its stdin (a pipe; EOF, whenever it comes, is harmless), and the
keeper also learns it from the file (owner-only, as the server's password is in it).

Run as ``python -m orchestrator_tui.opencode.keeper --folder DIR --pid PID --start-time TICKS
[--record NAME --record-lock NAME] [--private]``; it writes one line, ``ready``, on stdout once it
holds ``server-alive.lock``, and nothing more; it reads its stdin (the record) until EOF. This
module imports only the standard library, so the keeper is up in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: The lock every front end holds shared for its whole life.
ALIVE_LOCK = "alive.lock"
#: The lock the keeper holds exclusively while its server lives.
SERVER_ALIVE_LOCK = "server-alive.lock"
#: SIGTERM → SIGKILL. Detection is immediate, so "no front end" → "no process" stays under 5 s.
GRACE = 2.0
#: How often the keeper looks at the record it guards.
RECORD_CHECK_INTERVAL = 0.25
#: How long a front end waits for a keeper to start and take its lock.
READY_TIMEOUT = 20.0
#: How long a keeper waits for ``server-alive.lock``. A front end starts a keeper only under the
#: record lock after seeing that lock free, so a keeper that finds it held is a second one.
SERVER_LOCK_WAIT = 1.0


@dataclass(frozen=True)
class KeeperSpec:
    """Where a server's keeper watches: the folder of ``alive.lock`` and ``server-alive.lock``,
    and (a shared pool's server) the record file naming the server and the lock writers of that
    record take. ``private``: the folder is the server's own (a temporary one), removed by the
    keeper when it is done, and the `ManagedServer` itself holds the shared lock."""

    folder: Path
    record: str | None = None
    record_lock: str | None = None
    private: bool = False

    @classmethod
    def private_folder(cls) -> KeeperSpec:
        return cls(Path(tempfile.mkdtemp(prefix="orchestrator-tui-server-")), private=True)


# ------------------------------------------------------------------------------------------------
# the front end's side


def open_lock(path: Path) -> int:
    """A lock file of ours, opened without following links and close-on-exec."""
    return os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def flock_within(
    fd: int, timeout: float, *, shared: bool = False, pause: float = 0.02, give_up: Callable[[], bool] | None = None
) -> bool:
    """Take a ``flock`` on ``fd``, polling until ``timeout`` seconds have passed (or ``give_up``
    says there is no point waiting); False when it was not had. Polled, never blocking, so a
    holder that hangs costs a bounded wait and a signal still gets through."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline or (give_up is not None and give_up()):
                return False
            time.sleep(pause)


def hold_alive(folder: Path, timeout: float) -> int:
    """Take the shared front-end lock of ``folder``; returns the fd to keep open for life.

    Waits (polling) while a keeper holds it exclusively: that keeper is stopping the last
    server, and a front end joining now must find it gone, not half-stopped. Raises
    TimeoutError after ``timeout`` seconds."""
    fd = open_lock(folder / ALIVE_LOCK)
    if flock_within(fd, timeout, shared=True, pause=0.05):
        return fd
    os.close(fd)
    raise TimeoutError(f"{folder / ALIVE_LOCK} stayed locked for {timeout:.0f}s")


def server_kept(folder: Path) -> bool:
    """Whether a keeper of ``folder`` holds ``server-alive.lock``: its server is running (or it is
    finishing stopping it). Asked under the record lock, so no keeper starts meanwhile."""
    try:
        fd = os.open(folder / SERVER_ALIVE_LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's lock
    return False


def keeper_argv(spec: KeeperSpec, pid: int, start_time: int) -> list[str]:
    argv = [sys.executable, "-m", __name__, "--folder", str(spec.folder), "--pid", str(pid)]
    argv += ["--start-time", str(start_time)]
    if spec.record is not None and spec.record_lock is not None:
        argv += ["--record", spec.record, "--record-lock", spec.record_lock]
    if spec.private:
        argv.append("--private")
    return argv


def start_time_of(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: clock ticks after boot, unique to this process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a live process of ours has this pid. A zombie counts as gone, and so does another
    user's process: a pid read from a file may have been reused by anyone. The one test of a
    recorded pid for the front ends (members, the server record) and the keeper alike."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but we may not signal it: not ours
        return False
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.geteuid():  # root may signal anyone: look at the owner
            return False
        # a zombie (exited, not yet reaped) answers kill(0) but is gone for our purposes
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # gone meanwhile; without procfs, kill(0) is all we know
    except OSError:
        return True


# ------------------------------------------------------------------------------------------------
# the keeper process


class Keeper:
    def __init__(self, args: argparse.Namespace) -> None:
        self.folder = Path(args.folder)
        self.pid: int = args.pid
        self.start_time: int = args.start_time
        self.record = self.folder / args.record if args.record else None
        self.record_lock = self.folder / args.record_lock if args.record_lock else None
        self.private: bool = args.private
        #: The record as the front end wrote it for this server (restored if damaged).
        self.known_record: bytes | None = None
        self.pidfd: int | None = None
        self.wake_r, self.wake_w = os.pipe()

    def log(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} keeper {os.getpid()} (opencode {self.pid}): {text}",
                  file=sys.stderr, flush=True)  # fmt: skip

    # -- the server --------------------------------------------------------------------------------

    def attach(self) -> bool:
        """Open a pidfd on the server and prove it is the process we were started for."""
        try:
            self.pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        except (OSError, AttributeError):
            self.pidfd = None  # no pidfd here: the start time is polled instead
        return start_time_of(self.pid) == self.start_time

    def server_alive(self) -> bool:
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]
        return start_time_of(self.pid) == self.start_time

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait_server(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.server_alive():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.pidfd is not None:
                select.select([self.pidfd], [], [], remaining)
            else:
                time.sleep(min(remaining, 0.02))
        return True

    def stop_server(self) -> None:
        if self.server_alive():
            self.signal_group(signal.SIGTERM)
            if not self.wait_server(GRACE):
                self.log(f"ignored SIGTERM for {GRACE:.0f}s; SIGKILL")
        # Always: the leader may be gone while its own children (e.g. npm) are not.
        self.signal_group(signal.SIGKILL)
        self.wait_server(2.0)

    # -- the record --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def record_locked(self, timeout: float) -> Iterator[bool]:
        assert self.record_lock is not None
        fd = open_lock(self.record_lock)
        try:
            yield flock_within(fd, timeout)
        finally:
            os.close(fd)

    def read_record(self) -> tuple[bytes | None, int | None]:
        """(raw bytes, pid it names); (None, None) when absent, (bytes, None) when unreadable."""
        assert self.record is not None
        try:
            fd = os.open(self.record, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        except OSError:
            return b"", None
        try:
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(1 << 20)
        except OSError:
            return b"", None
        try:
            data = json.loads(raw)
        except ValueError:
            return raw, None
        pid = data.get("pid") if isinstance(data, dict) else None
        return raw, pid if isinstance(pid, int) and not isinstance(pid, bool) else None

    def guard_record(self) -> None:
        """Learn the record of our server once it is written; put it back if it was damaged or
        deleted while the server runs (a front end reading garbage must not start a second
        server: it waits for this)."""
        if self.record is None:
            return
        with self.record_locked(0) as locked:
            if not locked or not self.server_alive():
                return  # a front end is reading or writing it: look again later
            raw, pid = self.read_record()
            if pid == self.pid:
                self.known_record = raw
                return
            if self.known_record is None:
                return
            if raw is not None and pid is not None and pid_alive(pid):
                return  # it names another live process: not ours to overwrite
            self.log("the pool's server record was damaged or removed; restoring it")
            tmp = self.record.with_name(self.record.name + ".keeper")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.known_record)
            os.replace(tmp, self.record)

    def clear_record(self) -> None:
        """Remove the record if it names our (now stopped) server, or is unreadable."""
        if self.record is None:
            return
        with self.record_locked(3.0):
            raw, pid = self.read_record()
            if raw is not None and (pid is None or pid == self.pid):
                with contextlib.suppress(FileNotFoundError):
                    self.record.unlink()

    # -- the watch ---------------------------------------------------------------------------------

    def learn_record(self) -> None:
        """The record as its writer hands it over on stdin (then EOF); kept if it names us."""
        with contextlib.suppress(OSError, ValueError):
            raw = sys.stdin.buffer.read(1 << 20)
            data = json.loads(raw) if raw.strip() else None
            if isinstance(data, dict) and data.get("pid") == self.pid:
                self.known_record = raw

    def wait_for_no_front_end(self) -> None:
        """Blocks until the exclusive lock is granted: no front end holds ``alive.lock``. If the
        lock cannot be watched at all (its folder was removed), the server is stopped: a
        server nobody can account for is the one thing this process exists to prevent."""
        try:
            fd = open_lock(self.folder / ALIVE_LOCK)
            fcntl.flock(fd, fcntl.LOCK_EX)  # kept (fd left open) until the keeper exits
        except OSError as exc:
            self.log(f"cannot watch {self.folder / ALIVE_LOCK}: {exc}")
        os.write(self.wake_w, b"x")

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: os.write(self.wake_w, b"s"))
        if not self.attach():
            self.log("the server is gone already (or the pid is not the server's)")
            self.remove_private_folder()
            return 1
        server_lock = open_lock(self.folder / SERVER_ALIVE_LOCK)
        if not flock_within(server_lock, SERVER_LOCK_WAIT, give_up=lambda: not self.server_alive()):
            # Never ready: whoever started us stops a server it just spawned itself.
            self.log("another keeper holds the server lock; leaving")
            return 1
        with contextlib.suppress(OSError):
            os.ftruncate(server_lock, 0)
            os.write(server_lock, f"{os.getpid()}\n".encode())
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        _detach_stdout()
        threading.Thread(target=self.wait_for_no_front_end, name="alive-lock", daemon=True).start()
        if self.record is not None:
            threading.Thread(target=self.learn_record, name="record", daemon=True).start()
        watched = [self.wake_r] + ([self.pidfd] if self.pidfd is not None else [])
        while True:
            try:
                ready = select.select(watched, [], [], RECORD_CHECK_INTERVAL)[0]
            except InterruptedError:
                continue
            if self.wake_r in ready:
                why = os.read(self.wake_r, 1)
                if self.server_alive():
                    self.log("no front end left" if why == b"x" else "asked to stop")
                    self.stop_server()
                self.clear_record()
                self.log("server stopped")
                break
            if not self.server_alive():
                self.signal_group(signal.SIGKILL)  # whatever it left in its group
                self.log("the server exited on its own")
                break
            try:
                self.guard_record()
            except OSError as exc:
                self.log(f"cannot check the record: {exc}")
        self.remove_private_folder()
        return 0

    def remove_private_folder(self) -> None:
        if self.private:
            shutil.rmtree(self.folder, ignore_errors=True)


def _detach_stdout() -> None:
    """After ``ready`` nothing more is said: stdout goes to /dev/null, so the pipe to the front
    end that started us can close (or its reader die) without harm."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestrator-tui keeper", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--start-time", type=int, required=True)
    parser.add_argument("--record")
    parser.add_argument("--record-lock")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)
    try:
        return Keeper(args).run()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            print(f"keeper: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    # Not a normal interpreter exit: the daemon threads may sit in a read of stdin or a flock,
    # and finalizing under them can abort the process.
    os._exit(code)
