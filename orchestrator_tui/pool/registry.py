"""What OpenCode does not record for us: who launched each session, and every decision.

A small SQLite file (stdlib ``sqlite3``, WAL, owner-only) in the pool's state folder, shared
by every front end of the pool. Writes are tiny and synchronous; WAL lets readers in other
processes go on while one writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Origin = Literal["agent", "human", "other"]

STATE_DIR_ENV = "ORCHESTRATOR_TUI_STATE_DIR"
DEFAULT_POOL = "default"

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
"""


def state_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator-tui"


def pool_dir(pool: str = DEFAULT_POOL, env: Mapping[str, str] | None = None) -> Path:
    """The pool's folder, created owner-only (0700) if missing."""
    path = state_root(env) / pool
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


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


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Create the file owner-only before SQLite opens it, so it is never world-readable.
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    @classmethod
    def for_pool(cls, pool: str = DEFAULT_POOL, env: Mapping[str, str] | None = None) -> Registry:
        return cls(pool_dir(pool, env) / "registry.sqlite3")

    def close(self) -> None:
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
