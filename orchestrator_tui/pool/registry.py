"""What OpenCode does not record for us: who launched each session, and every decision.

A small SQLite file (stdlib ``sqlite3``, WAL, owner-only) in the pool's state folder, shared
by every front end of the pool. Writes are tiny and synchronous; WAL lets readers in other
processes go on while one writes.

Besides the history (launches, decisions) it holds what the front ends of one pool must agree
on across processes:

* ``members``: every front end attached to the pool (dashboards, MCP workers), by pid, so
  the last one out can stop the shared server and the dashboard can show who is attached;
* ``claims``: one row per answered request. Inserting it is the atomic "I answer this"; the
  primary key makes exactly one of two simultaneous answers win, whatever process they are in;
* ``rules``: standing decisions made from the inbox ("always allow read under this project"),
  applied by the pool to future requests of every session until revoked.

Over 600 lines on purpose: one database file, one schema, one setup lock and one way of opening,
checking and migrating it; split by table, each part would need all of that again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator_tui.opencode.keeper import flock_within, open_lock, pid_alive
from orchestrator_tui.pool.names import (  # where a pool lives: kept light for `orchestrator-tui status`
    DEFAULT_POOL,
    STATE_DIR_ENV,
    PoolStateError,
    pool_name,
    state_root,
)
from orchestrator_tui.pool.projects import in_project

log = logging.getLogger(__name__)

Origin = Literal["agent", "human", "other"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS launches (
    session_id   TEXT PRIMARY KEY,
    origin       TEXT NOT NULL,
    launcher_id  TEXT NOT NULL,
    client_name  TEXT,
    client_version TEXT,
    launched_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    decision     TEXT NOT NULL,
    detail       TEXT,
    decided_by   TEXT NOT NULL,
    channel      TEXT NOT NULL,
    client_name  TEXT,
    decided_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_request ON decisions(request_id);
CREATE TABLE IF NOT EXISTS members (
    member_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    client_name  TEXT,
    client_version TEXT,
    since        REAL NOT NULL,
    in_flight    TEXT,
    in_flight_since REAL,
    directory    TEXT,
    showing      TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    request_id   TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    decision     TEXT NOT NULL,
    decided_by   TEXT NOT NULL,
    channel      TEXT NOT NULL,
    client_name  TEXT,
    claimed_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rules (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    permission   TEXT NOT NULL,
    pattern      TEXT NOT NULL,
    reply        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   REAL NOT NULL,
    revoked_at   REAL,
    revoked_by   TEXT
);
"""

#: Columns added after a table was first shipped: (table, column, definition).
_ADDED_COLUMNS = (("rules", "revoked_by", "TEXT"), ("members", "directory", "TEXT"), ("members", "showing", "TEXT"))

MemberKind = Literal["agent", "human"]
#: Whether a human can see a request now (:meth:`Registry.sight`).
Sight = Literal["shown", "expected", "unseen", "absent"]

#: The member columns in :class:`Member`'s field order (the last two were added by ALTER TABLE).
_MEMBER_COLUMNS = (
    "member_id, kind, pid, client_name, client_version, since, in_flight, in_flight_since, directory, showing"
)
#: The rule columns in :class:`Rule`'s field order (``revoked_by`` was added by ALTER TABLE).
_RULE_COLUMNS = "id, permission, pattern, reply, created_by, created_at, revoked_at, revoked_by"


def pool_dir(pool: str = DEFAULT_POOL, env: Mapping[str, str] | None = None) -> Path:
    """The pool's folder, created owner-only (0700) if missing; raises `UnsafePoolPath` when it,
    or the state folder it is in, is not a private folder of ours."""
    root = state_root(env)
    private_dir(root)
    return private_dir(root / pool)


class UnsafePoolPath(PoolStateError):
    """A pool folder or file that someone else could have written; ``str()`` says what and the fix.

    The pool folder holds the server's password and decides which process gets signalled, so
    anything in it that is not provably ours is refused, never trusted and never repaired quietly.
    """


def private_dir(path: Path) -> Path:
    """``path`` as a folder that only we can write: created 0700 if missing, refused (with
    `UnsafePoolPath`) when it is a symbolic link, not a folder, not ours, or writable by others."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        pass  # something that is not a folder (or a dangling link): described below
    except OSError as exc:
        raise UnsafePoolPath(
            f"cannot create the folder {path}: {exc.strerror or exc}",
            f"make its parent a folder you own and can write, or set {STATE_DIR_ENV} to one",
        ) from None
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UnsafePoolPath(
            f"cannot inspect the folder {path}: {exc.strerror or exc}",
            f"make its parent a folder you own and can read, or set {STATE_DIR_ENV} to one",
        ) from None
    problem = _ownership_problem(st, directory=True)
    if problem is not None:
        raise UnsafePoolPath(f"refusing to use {path}: {problem[0]}", problem[1].format(path=path))
    return path


def _move_aside(path: Path) -> str:
    return (
        f"move it aside (mv {path} {path}.broken) and start orchestrator-tui again: a new, empty registry is created "
        "(the decision log, rules and launch records of the old one stay in the moved file)"
    )


def database_problem(path: Path, exc: sqlite3.Error) -> PoolStateError:
    """What a database error on the registry means for the user, with the fix.

    Decided by SQLite's result code, never by the message: an error without one did not come
    from SQLite itself (a connection closed under us), and says so.
    """
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None  # extended codes keep the primary one below
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return PoolStateError(
            f"the pool's registry {path} is locked by another process ({text})",
            "wait for the other orchestrator-tui front end of this pool to finish, or stop it, then try again",
        )
    if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return PoolStateError(
            f"the pool's registry {path} cannot be opened for writing ({text})",
            f"make {path} and {path.parent} yours and writable (chmod 700 {path.parent}; chmod 600 {path})",
        )
    if primary is None:
        return PoolStateError(
            f"the pool's registry {path} cannot be used ({text})",
            "try again; if it keeps failing, restart orchestrator-tui",
        )
    return PoolStateError(f"the pool's registry {path} is damaged or not a registry ({text})", _move_aside(path))


def check_private_file(path: Path, st: os.stat_result, *, readable_by_others: bool = False) -> None:
    """Raise `UnsafePoolPath` unless ``st`` (an ``lstat``/``fstat`` of ``path``) is a regular file of
    ours that nobody else may write (nor read, unless ``readable_by_others``)."""
    problem = _ownership_problem(st, directory=False, readable_by_others=readable_by_others)
    if problem is not None:
        raise UnsafePoolPath(f"refusing to use {path}: {problem[0]}", problem[1].format(path=path))


def _ownership_problem(
    st: os.stat_result, *, directory: bool, readable_by_others: bool = True
) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for a pool folder or file, or None when it is fine."""
    kind = "folder" if directory else "file"
    remove = "rm -r {path}" if directory else "rm {path}"
    if stat.S_ISLNK(st.st_mode):
        return f"it is a symbolic link, not a {kind}", "remove the link (rm {path}); it is created afresh"
    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        return f"it is not a {'folder' if directory else 'regular file'}", f"remove it ({remove})"
    uid = os.geteuid()
    if st.st_uid != uid:
        return (
            f"it belongs to uid {st.st_uid}, not to you (uid {uid})",
            f"remove it ({remove}) or use a pool of your own (--pool NAME, or {STATE_DIR_ENV})",
        )
    loose = stat.S_IWGRP | stat.S_IWOTH
    if not readable_by_others:
        loose |= stat.S_IRGRP | stat.S_IROTH
    if st.st_mode & loose:
        mode = stat.S_IMODE(st.st_mode)
        others = "writable" if readable_by_others else "readable or writable"
        fix = "chmod 700 {path}" if directory else f"{remove}; it is written afresh, owner-only"
        return f"its mode {mode:04o} makes it {others} by other users", fix
    return None


@dataclass(frozen=True, slots=True)
class Launch:
    session_id: str
    origin: Origin
    launcher_id: str
    client_name: str | None
    client_version: str | None
    launched_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    session_id: str
    kind: str
    decision: str
    detail: dict[str, Any] | None
    decided_by: str
    channel: str
    client_name: str | None
    decided_at: float


@dataclass(frozen=True, slots=True)
class Member:
    """A front end attached to the pool (a dashboard or an MCP worker)."""

    member_id: str
    kind: MemberKind
    pid: int
    client_name: str | None
    client_version: str | None
    since: float
    #: The tool call this worker is running ("run ses_…"), if any.
    in_flight: str | None
    in_flight_since: float | None
    #: The directory the front end works in (a worker's sessions run there).
    directory: str | None = None
    #: A dashboard's :class:`Showing`, as JSON (None: it has not said yet).
    showing: str | None = None

    def shows(self) -> Showing | None:
        """What this dashboard shows now (None: not said, or not readable)."""
        return Showing.from_json(self.showing) if self.showing else None


@dataclass(frozen=True, slots=True)
class Showing:
    """What a dashboard shows a human right now; the policy waits for a human only on this.

    A dashboard that is merely attached is not enough: it may be filtered to another project,
    or cut off from the server. So each dashboard says which requests its inbox lists, which
    projects its view is limited to, and whether its event stream is connected.
    """

    #: Ids of the requests the inbox lists.
    requests: frozenset[str] = frozenset()
    #: The projects the view is limited to (None: every project).
    projects: tuple[str, ...] | None = None
    #: Whether the dashboard hears the server's events (a new request reaches it within moments).
    connected: bool = False

    def covers(self, directory: str | None) -> bool:
        """Whether a request of a session in ``directory`` would be listed by this view."""
        if self.projects is None:
            return True
        return directory is not None and any(in_project(directory, p) for p in self.projects)

    def to_json(self) -> str:
        return json.dumps(
            {"requests": sorted(self.requests), "projects": self.projects, "connected": self.connected},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Showing | None:
        try:
            data = json.loads(text)
            requests = frozenset(str(r) for r in data["requests"])
            projects = data["projects"]
            return cls(
                requests,
                None if projects is None else tuple(str(p) for p in projects),
                bool(data["connected"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Claim:
    """Who answered a request, how and when; the first claim of a request wins."""

    request_id: str
    session_id: str
    decision: str
    decided_by: str
    channel: str
    client_name: str | None
    claimed_at: float

    def describe(self) -> str:
        """``already answered by human (dashboard) at 12:03:04: once`` — what the loser is told."""
        who = self.decided_by + (f" ({self.client_name})" if self.client_name else f" ({self.channel})")
        when = time.strftime("%H:%M:%S", time.localtime(self.claimed_at))
        return f"already answered by {who} at {when}: {self.decision}"


@dataclass(frozen=True, slots=True)
class Rule:
    """A standing decision: reply ``reply`` to every ``permission`` request matching ``pattern``."""

    id: int
    permission: str
    pattern: str
    reply: str
    created_by: str
    created_at: float
    revoked_at: float | None
    #: Who revoked it ("human (orchestrator-tui dashboard)"), when revoked.
    revoked_by: str | None = None

    @property
    def decider(self) -> str:
        """How the audit log names a decision this rule made."""
        return f"rule #{self.id}"


def _expected_columns() -> dict[str, list[str]]:
    """Every table of the schema and its columns, read back from the schema itself."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in tables if t != "sqlite_sequence"}
    finally:
        db.close()


SETUP_LOCK_TIMEOUT = 15.0


@contextlib.contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    """Hold ``<registry>.setup-lock`` while a connection switches the file to WAL and checks the schema.

    SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without
    waiting out its busy timeout, when another process is doing the same first-time setup;
    front ends starting together then failed. A kernel lock (released if its holder dies)
    makes those few milliseconds of setup one process at a time.
    """
    lock_path = path.with_name(path.name + ".setup-lock")
    fd = open_lock(lock_path)
    try:
        check_private_file(lock_path, os.fstat(fd))
        if not flock_within(fd, SETUP_LOCK_TIMEOUT):
            # SQLite's own word for it, with its code: database_problem tells errors apart by
            # the code, and says who holds the lock and what to do.
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            busy.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
            raise busy
        yield
    finally:
        os.close(fd)


class Registry:
    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the registry at ``path``; raises :class:`PoolStateError`."""
        self.path = path
        try:
            self._db = self._open(path)
        except PoolStateError:
            raise
        except sqlite3.DatabaseError as exc:
            raise database_problem(path, exc) from exc
        except OSError as exc:
            raise PoolStateError(
                f"the pool's registry {path} cannot be opened: {exc.strerror or exc}",
                f"make {path.parent} a folder you own and can write (chmod 700 {path.parent}), or choose another "
                "pool with --pool NAME",
            ) from exc

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        private_dir(path.parent)
        # Create the file owner-only before SQLite opens it, so it is never world-readable; a
        # planted link or someone else's file is refused (SQLite would follow and trust it).
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError:
            if os.path.islink(path):
                check_private_file(path, os.lstat(path))
            raise
        try:
            check_private_file(path, os.fstat(fd))
        finally:
            os.close(fd)
        deadline = time.monotonic() + SETUP_LOCK_TIMEOUT
        while True:
            try:
                with _setup_lock(path):
                    return Registry._connect(path)
            except sqlite3.OperationalError as exc:
                # A front end ending (its last connection checkpoints and removes the WAL) can
                # still make setup fail at once with SQLITE_BUSY, past any busy timeout; it is
                # over within milliseconds, so try again rather than refuse to start.
                busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            for table, column, definition in _ADDED_COLUMNS:
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            for table, columns in _expected_columns().items():
                present = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
                missing = [c for c in columns if c not in present]
                if missing:
                    raise PoolStateError(
                        f"the pool's registry {path} is not one orchestrator-tui can use: its table {table!r} has "
                        f"no column {missing[0]!r} (another program's database, or a damaged one)",
                        _move_aside(path),
                    )
        except BaseException:
            db.close()
            raise
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        return db

    @classmethod
    def for_pool(cls, pool: str | None = DEFAULT_POOL, env: Mapping[str, str] | None = None) -> Registry:
        """The named pool's registry (``None``: the pool from the environment); raises :class:`PoolStateError`."""
        name = pool_name(pool, env)
        try:
            folder = pool_dir(name, env)
        except OSError as exc:
            root = state_root(env)
            raise PoolStateError(
                f"the pool folder {root / name} cannot be created or used: {exc.strerror or exc}",
                f"make {root} a folder you own and can write, or set {STATE_DIR_ENV} to one",
            ) from exc
        return cls(folder / "registry.sqlite3")

    def close(self) -> None:
        # The last connection to close checkpoints and removes the WAL; doing that under the
        # setup lock keeps it from racing a front end that is opening the registry right now.
        try:
            with _setup_lock(self.path):
                self._db.close()
        except (OSError, sqlite3.OperationalError):
            self._db.close()

    def record_launch(
        self,
        session_id: str,
        origin: Origin,
        launcher_id: str,
        client_name: str | None = None,
        client_version: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO launches VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, origin, launcher_id, client_name, client_version, time.time()),
        )

    def launches(self, session_ids: Iterable[str] | None = None) -> dict[str, Launch]:
        if session_ids is None:
            rows = self._db.execute("SELECT * FROM launches").fetchall()
        else:
            ids = list(session_ids)
            rows = []
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._db.execute(f"SELECT * FROM launches WHERE session_id IN ({marks})", chunk).fetchall()
        return {r[0]: Launch(*r) for r in rows}

    def record_decision(
        self,
        *,
        request_id: str,
        session_id: str,
        kind: str,
        decision: str,
        decided_by: str,
        channel: str,
        detail: Mapping[str, Any] | None = None,
        client_name: str | None = None,
    ) -> None:
        self._db.execute(
            "INSERT INTO decisions (request_id, session_id, kind, decision, detail, decided_by, channel,"
            " client_name, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request_id,
                session_id,
                kind,
                decision,
                json.dumps(dict(detail)) if detail is not None else None,
                decided_by,
                channel,
                client_name,
                time.time(),
            ),
        )

    def decisions(self, *, request_id: str | None = None, limit: int = 200) -> list[Decision]:
        cols = "request_id, session_id, kind, decision, detail, decided_by, channel, client_name, decided_at"
        if request_id is None:
            rows = self._db.execute(f"SELECT {cols} FROM decisions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {cols} FROM decisions WHERE request_id = ? ORDER BY id DESC LIMIT ?", (request_id, limit)
            ).fetchall()
        return [Decision(*r[:4], json.loads(r[4]) if r[4] else None, *r[5:]) for r in rows]

    # ------------------------------------------------------------------ members

    def register_member(
        self,
        kind: MemberKind,
        client_name: str | None = None,
        client_version: str | None = None,
        directory: str | None = None,
    ) -> str:
        """Record this process as a front end of the pool; returns its member id."""
        member_id = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO members (member_id, kind, pid, client_name, client_version, since, directory) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (member_id, kind, os.getpid(), client_name, client_version, time.time(), directory),
        )
        return member_id

    def show(self, member_id: str, showing: Showing) -> None:
        """Say what this dashboard shows now (see :class:`Showing`)."""
        self._db.execute("UPDATE members SET showing = ? WHERE member_id = ?", (showing.to_json(), member_id))

    def update_member(
        self,
        member_id: str,
        *,
        client_name: str | None = None,
        client_version: str | None = None,
        in_flight: str | Literal[False] | None = False,
    ) -> None:
        """Change what is known of a member; ``in_flight=None`` clears the call in flight."""
        if client_name is not None or client_version is not None:
            self._db.execute(
                "UPDATE members SET client_name = ?, client_version = ? WHERE member_id = ?",
                (client_name, client_version, member_id),
            )
        if in_flight is not False:
            self._db.execute(
                "UPDATE members SET in_flight = ?, in_flight_since = ? WHERE member_id = ?",
                (in_flight, time.time() if in_flight else None, member_id),
            )

    def remove_member(self, member_id: str) -> None:
        self._db.execute("DELETE FROM members WHERE member_id = ?", (member_id,))

    def members(self) -> list[Member]:
        """The live members, oldest first; rows of processes that died without leaving are dropped."""
        rows = self._db.execute(f"SELECT {_MEMBER_COLUMNS} FROM members ORDER BY since").fetchall()
        live: list[Member] = []
        for row in rows:
            member = Member(*row)
            if pid_alive(member.pid):
                live.append(member)
            else:
                self._db.execute("DELETE FROM members WHERE member_id = ?", (member.member_id,))
        return live

    def human_attached(self) -> bool:
        """Whether a dashboard is attached to the pool right now."""
        return any(m.kind == "human" for m in self.members())

    def sight(self, request_id: str, directory: str | None) -> Sight:
        """Whether a human can see a request now, as the dashboards say (:class:`Showing`).

        ``shown``: a dashboard lists it. ``expected``: none lists it yet, but a connected
        dashboard's view covers its directory (the request reaches it within moments; one that
        has not said what it shows yet counts too). ``unseen``: dashboards are attached, but
        none would show it (filtered to other projects, or cut off from the server).
        ``absent``: no dashboard is attached.
        """
        humans = [m for m in self.members() if m.kind == "human"]
        if not humans:
            return "absent"
        views = [m.shows() for m in humans]
        if any(view is not None and request_id in view.requests for view in views):
            return "shown"
        if any(view is None or (view.connected and view.covers(directory)) for view in views):
            return "expected"
        return "unseen"

    # ------------------------------------------------------------------ claims

    def claim(
        self,
        request_id: str,
        *,
        session_id: str,
        decision: str,
        decided_by: str,
        channel: str,
        client_name: str | None = None,
    ) -> Claim | None:
        """Claim the right to answer ``request_id``: None when we won, else the winning claim."""
        try:
            self._db.execute(
                "INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, session_id, decision, decided_by, channel, client_name, time.time()),
            )
        except sqlite3.IntegrityError:
            existing = self.claim_of(request_id)
            if existing is None:  # released between our insert and our read: try once more
                return self.claim(
                    request_id,
                    session_id=session_id,
                    decision=decision,
                    decided_by=decided_by,
                    channel=channel,
                    client_name=client_name,
                )
            return existing
        return None

    def claim_of(self, request_id: str) -> Claim | None:
        row = self._db.execute("SELECT * FROM claims WHERE request_id = ?", (request_id,)).fetchone()
        return Claim(*row) if row else None

    def release_claim(self, request_id: str) -> None:
        """Give a claim back because the reply could not be delivered (someone may retry).

        Best effort, never raising: it runs while another error is being handled, which a
        registry hiccup must not replace (the claim then simply stays, as if the reply happened).
        """
        try:
            self._db.execute("DELETE FROM claims WHERE request_id = ?", (request_id,))
        except sqlite3.Error:
            log.exception("could not release the claim on %s", request_id)

    # ------------------------------------------------------------------ rules

    def add_rule(
        self,
        permission: str,
        pattern: str,
        reply: str,
        created_by: str,
        *,
        channel: str = "dashboard",
        client_name: str | None = None,
    ) -> Rule:
        """Store a rule, and say so in the decision log (who made it, what it answers)."""
        if reply not in ("once", "always", "reject"):
            raise ValueError(f"unknown reply {reply!r}: use once, always or reject")
        with self._db:
            cur = self._db.execute(
                "INSERT INTO rules (permission, pattern, reply, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
                (permission, pattern, reply, created_by, time.time()),
            )
            rule_id = int(cur.lastrowid or 0)
            self._record_rule_event(rule_id, "created", permission, pattern, reply, created_by, channel, client_name)
        rule = self.rule(rule_id)
        assert rule is not None
        return rule

    def rule(self, rule_id: int) -> Rule | None:
        row = self._db.execute(f"SELECT {_RULE_COLUMNS} FROM rules WHERE id = ?", (rule_id,)).fetchone()
        return Rule(*row) if row else None

    def rules(self, *, include_revoked: bool = False) -> list[Rule]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = self._db.execute(f"SELECT {_RULE_COLUMNS} FROM rules{where} ORDER BY id").fetchall()
        return [Rule(*r) for r in rows]

    def revoke_rule(
        self, rule_id: int, revoked_by: str = "human", *, channel: str = "dashboard", client_name: str | None = None
    ) -> bool:
        """Stop a rule at once, for every front end; False when there was no active rule with that id.

        Who revoked it and when is kept on the rule and written to the decision log.
        """
        who = revoked_by + (f" ({client_name})" if client_name else "")
        with self._db:
            cur = self._db.execute(
                "UPDATE rules SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), who, rule_id),
            )
            if cur.rowcount == 0:
                return False
            rule = self.rule(rule_id)
            assert rule is not None
            self._record_rule_event(
                rule_id, "revoked", rule.permission, rule.pattern, rule.reply, revoked_by, channel, client_name
            )
        return True

    def _record_rule_event(
        self,
        rule_id: int,
        event: str,
        permission: str,
        pattern: str,
        reply: str,
        decided_by: str,
        channel: str,
        client_name: str | None,
    ) -> None:
        self.record_decision(
            request_id=f"rule #{rule_id}",
            session_id="",
            kind="rule",
            decision=event,
            decided_by=decided_by,
            channel=channel,
            detail={"rule": rule_id, "permission": permission, "pattern": pattern, "reply": reply},
            client_name=client_name,
        )
