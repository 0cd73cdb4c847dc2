"""The dashboard as `benchmarks.pty_keys` runs it: a real terminal app, a big pool, a live feed.

    python -m benchmarks._pty_app [--sessions 10000] [--rate 1000] [--busy 60]
    python -m benchmarks._pty_app --attach URL [--server NAME=URL ...]

Started by the benchmark on the slave side of a pseudo-terminal; not meant to be run by hand
(it would take over your terminal; ``q`` quits). The app is the product's `DashboardApp` with its
real Textual driver, its own registry (pool folder under ``ORCHESTRATOR_TUI_STATE_DIR``) and rule
engine. Two ways to fill it:

- one server (the default): a pool preloaded with ``--sessions`` sessions, as right after a
  resync, and a feed in the app's own process. No OpenCode server is involved: the figures are
  the dashboard's own;
- several servers (``--attach URL --server NAME=URL ...``, as on the dashboard's command line):
  the product's own `PoolService` follows the fake OpenCode servers of `benchmarks._fake_servers`
  over HTTP (``/global/event``, the resync's REST reads), which hold the sessions and stream
  the feed. SIGUSR1/SIGUSR2 only make the app report (the feed is the fake servers' to run).

The feed: SIGUSR1 starts it, SIGUSR2 stops it. It replays the recorded real ``/event`` stream
(``benchmarks/data/events.jsonl``: text deltas, message and part updates, statuses, session
updates and diffs, in the proportions OpenCode sends them) at ``--rate`` events per second through
`parse_event` + `Pool.apply`, exactly what the event stream does with each ``data:`` payload.
The six recorded sessions are mapped, pass after pass, onto the ``--busy`` most recent sessions,
and each ``session.updated`` carries that session's own info with ``time.updated`` = now, so
active sessions stay on top of the list and keep changing places there, as they do in real use.
Requests (``permission.asked``, ``question.asked``) are left out: they would stack up toasts,
which is not what this measures.

It tells the benchmark what it is doing on the file descriptor named by ``BENCH_REPORT_FD``,
one JSON object per line: ``{"event": "start", "t": ..., "cpu": ...}`` just before the app starts
(t on the system-wide monotonic clock, cpu: the process's CPU time so far), ``{"event": "ready"}``
once the app has loaded the pool, ``{"event": "load", "on": bool, "events": n, "t": ...}`` when
the feed starts or stops (``n``: events the pool has applied so far, ``Pool.events_seen``), and,
following servers, ``{"event": "sessions", "server": name, "t": ...}`` each time a server's
session list has been loaded into the pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from benchmarks._common import EVENTS_FILE

#: The recorded event types replayed (everything a streaming turn sends, requests left out).
REPLAYED = {
    "message.part.delta",
    "message.updated",
    "message.part.updated",
    "session.status",
    "session.idle",
    "session.updated",
    "session.diff",
}

#: Short enough that a title ("review module 976 (8999)") fits the Session column whole even
#: beside the Server column: the benchmark reads which row is which off the title's end.
VERBS = ("rework", "test", "write", "tune", "review", "fix", "port", "move")
#: Where every session works (its directory; ``path`` puts it in a subdirectory of the project).
DIRECTORY = "/srv/project"
#: The attached servers' names, after the pool's own (``PRIMARY``, "local"): the Server column.
ATTACHED_NAMES = ("lab", "ci", "east", "west", "north", "south")


def server_names(servers: int) -> list[str]:
    """The names of ``servers`` servers: the pool's own first. Session ``i`` lives on
    ``names[i % servers]``, so the most recent sessions, at the top of the list, come from each."""
    from orchestrator_tui.pool.state import PRIMARY

    if not 1 <= servers <= len(ATTACHED_NAMES) + 1:
        raise SystemExit(f"--servers: 1 to {len(ATTACHED_NAMES) + 1}")
    return [PRIMARY, *ATTACHED_NAMES[: servers - 1]]


def session_id(i: int) -> str:
    return f"ses_{i:024d}"


def session_title(i: int) -> str:
    """Every title ends in ``(i)``: the benchmark reads which row is which off the screen."""
    return f"{VERBS[i % len(VERBS)]} module {i % 977} ({i})"


def session_info(i: int, now_ms: int) -> dict[str, Any]:
    return {
        "id": session_id(i),
        "title": session_title(i),
        "directory": DIRECTORY,
        "path": f"pkg/sub{i % 31}",
        "time": {"created": now_ms - i * 60_000, "updated": now_ms - i * 1000},
        "summary": {"additions": i % 50, "deletions": i % 7, "files": i % 5},
        "tokens": {"input": 1000 + i, "output": 200, "reasoning": 0, "cache": {"read": 0, "write": 0}},
        "cost": (i % 100) / 100,
    }


def preloaded_service(n: int) -> Any:
    """A `PoolService` holding ``n`` sessions, as right after a resync; no server behind it."""
    from orchestrator_tui.opencode.client import OpenCodeClient
    from orchestrator_tui.opencode.models import Session
    from orchestrator_tui.pool.handle import Snapshot
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    class PreloadedService(PoolService):
        def __init__(self) -> None:
            super().__init__(ServerSpec(cwd=Path.cwd(), attach_url="http://127.0.0.1:9"))
            self.snapshot = Snapshot(client=OpenCodeClient("http://127.0.0.1:9"), version="1.18.33")
            now = int(time.time() * 1000)
            self.pool.load_sessions((Session.model_validate(session_info(i, now)) for i in range(n)), complete=True)
            self.pool.load_statuses({})
            self.pool.set_connection("connected")

        async def acquire(self) -> Snapshot:
            return self.snapshot

        async def wait_stream(self, timeout: float) -> bool:
            return True

        async def resync(self, client: Any = None) -> None:
            return None

        async def close(self) -> None:
            await self.snapshot.client.aclose()

    return PreloadedService()


class Replay:
    """The recorded stream, endlessly, remapped onto the busy sessions (see the module docstring).

    With several servers, each has a replay of its own (``server``: its index) naming only the
    busy sessions that live on it (``i % servers == server``).
    """

    def __init__(self, busy: int, server: int = 0, servers: int = 1) -> None:
        events = [json.loads(line) for line in EVENTS_FILE.read_bytes().splitlines() if line.strip()]
        recorded: list[str] = []
        for event in events:
            sid = _session_of(event)
            if sid is not None and sid not in recorded:
                recorded.append(sid)
        self._recorded = recorded
        #: (raw payload, index of the recorded session it names, is it a session.updated)
        self._events: list[tuple[str, int, bool]] = []
        for event in events:
            sid = _session_of(event)
            if event.get("type") in REPLAYED and sid is not None:
                is_session = event["type"] == "session.updated"
                self._events.append((json.dumps(event), recorded.index(sid), is_session))
        self._targets = list(range(server, busy, servers))
        if not self._targets:
            raise SystemExit(f"--busy {busy}: no busy session on server {server} of {servers}")
        self._pass = 0
        self._next = 0

    def __next__(self) -> str:
        if self._next == len(self._events):
            self._next = 0
            self._pass += 1
        raw, k, is_session = self._events[self._next]
        self._next += 1
        target = self._targets[(self._pass * len(self._recorded) + k) % len(self._targets)]
        if is_session:
            now = int(time.time() * 1000)
            info = session_info(target, now)
            info["time"]["updated"] = now
            return json.dumps({"type": "session.updated", "properties": {"sessionID": info["id"], "info": info}})
        return raw.replace(self._recorded[k], session_id(target))


def _session_of(event: dict[str, Any]) -> str | None:
    props = event.get("properties") or {}
    sid = props.get("sessionID")
    if sid is None and isinstance(props.get("info"), dict):
        sid = props["info"].get("sessionID") or props["info"].get("id")
    if sid is None and isinstance(props.get("part"), dict):
        sid = props["part"].get("sessionID")
    return sid if isinstance(sid, str) else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._pty_app", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000, help="events per second while the feed runs")
    parser.add_argument("--busy", type=int, default=60, help="sessions the feed streams into")
    parser.add_argument("--attach", metavar="URL", help="follow this (fake) OpenCode server, not a preloaded pool")
    parser.add_argument("--server", metavar="NAME=URL", action="append", default=[], help="and this one too")
    args = parser.parse_args()

    from orchestrator_tui.cli import tune_dashboard_collector

    if os.environ.get("BENCH_TRACE"):
        from benchmarks._trace import install

        install(Path(os.environ["BENCH_TRACE"]))
    tune_dashboard_collector()  # as `orchestrator-tui` does, before its pool fills
    from orchestrator_tui.opencode.models import parse_event
    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.registry import Registry
    from orchestrator_tui.tui.app import DashboardApp

    report_fd = int(os.environ["BENCH_REPORT_FD"]) if os.environ.get("BENCH_REPORT_FD") else None

    def report(event: str, **fields: Any) -> None:
        if report_fd is not None:
            os.write(report_fd, (json.dumps({"event": event, **fields}) + "\n").encode())

    registry = Registry.for_pool(None)
    if args.attach:
        service = followed_service(args.attach, args.server, registry.path.parent)
        load_sessions = service.pool.load_sessions

        def loaded(sessions: Any, **kw: Any) -> None:
            """Each server's session list as it arrives (when its data is in), for first paint."""
            load_sessions(sessions, **kw)
            report("sessions", server=kw.get("server"), t=time.monotonic())

        service.pool.load_sessions = loaded
    else:
        service = preloaded_service(args.sessions)
    for i in range(40):  # something for the decision log to show
        registry.record_decision(
            request_id=f"per_{i:026d}",
            session_id=session_id(i),
            kind="permission",
            decision=("once", "always", "reject")[i % 3],
            decided_by="human",
            channel="dashboard",
            detail={"permission": "bash", "patterns": [f"echo {i}"]},
        )
    replay = None if args.attach else Replay(args.busy)  # read before the app starts, not on its loop
    load = {"on": False}

    async def feed() -> None:
        assert replay is not None
        apply = service.pool.apply
        per_tick = max(1, args.rate // 100)
        next_tick = time.monotonic()
        while True:
            if load["on"]:
                for _ in range(per_tick):
                    apply(None, parse_event(next(replay)))
                next_tick += 0.01
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            else:
                await asyncio.sleep(0.01)
                next_tick = time.monotonic()

    def switch(on: bool) -> None:
        load["on"] = on
        report("load", on=on, events=service.pool.events_seen, t=time.monotonic())

    signal.signal(signal.SIGUSR1, lambda *_: switch(True))
    signal.signal(signal.SIGUSR2, lambda *_: switch(False))

    def on_ready(app: DashboardApp) -> None:
        if replay is not None:
            app.run_worker(feed(), group="bench-feed")
        report("ready")

    app = DashboardApp(service, PoolActions(service, registry), registry, bell=False, on_ready=on_ready)
    report("start", t=time.monotonic(), cpu=time.process_time())
    try:
        app.run()
    finally:
        registry.close()


def followed_service(attach: str, servers: list[str], pool_folder: Path) -> Any:
    """The `PoolService` the dashboard builds for ``--attach URL --server NAME=URL ...``."""
    import dataclasses

    from orchestrator_tui.pool.servers import load_servers
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    spec = dataclasses.replace(ServerSpec.from_env(attach_url=attach), every_directory=True)
    return PoolService(spec, servers=load_servers(pool_folder, servers))


if __name__ == "__main__":
    main()
