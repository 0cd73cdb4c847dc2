"""Dashboard at scale: 10,000 sessions, 1,000 events/s (the human side's budgets, docs/budgets.md).

The app runs headless (Textual's test driver renders every frame as a terminal would, it just
does not write them to a tty) over a pool preloaded with 10,000 sessions; no OpenCode server
is involved, so the figures are the dashboard's own cost. Measured:

- first paint: app start (data already in the pool) → the first session row is rendered;
- a filter keystroke: key press → the filtered list is rendered (10 keystrokes, median/max);
- key → screen under 1,000 events/s: ``down`` → the new cursor row is rendered, while a task
  feeds the pool 1,000 events per second (deltas, statuses) for a few seconds;
- CPU share of one core during that load, and the process RSS with 10,000 sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Figure

SESSIONS = 10_000
EVENT_RATE = 1_000
LOAD_SECONDS = 5.0


def _sessions(n: int) -> list[Any]:
    from orchestrator_tui.opencode.models import Session

    now = int(time.time() * 1000)
    verbs = ("refactor", "test", "document", "profile", "review", "fix", "port", "migrate")
    return [
        Session.model_validate(
            {
                "id": f"ses_{i:024d}",
                "title": f"{verbs[i % len(verbs)]} module {i % 977} ({i})",
                "directory": "/srv/project",
                "path": f"pkg/sub{i % 31}",
                "time": {"created": now - i * 60_000, "updated": now - i * 1000},
                "summary": {"additions": i % 50, "deletions": i % 7, "files": i % 5},
                "tokens": {"input": 1000 + i, "output": 200, "reasoning": 0, "cache": {"read": 0, "write": 0}},
                "cost": (i % 100) / 100,
            }
        )
        for i in range(n)
    ]


def _service(n: int) -> Any:
    from orchestrator_tui.opencode.client import OpenCodeClient
    from orchestrator_tui.pool.handle import Snapshot
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    class PreloadedService(PoolService):
        """The pool as it is right after a resync; no server behind it."""

        def __init__(self) -> None:
            super().__init__(ServerSpec(cwd=Path.cwd(), attach_url="http://127.0.0.1:9"))
            self.snapshot = Snapshot(client=OpenCodeClient("http://127.0.0.1:9"), version="1.18.33")
            self.pool.load_sessions(_sessions(n), complete=True)
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


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _measure() -> dict[str, float]:
    from orchestrator_tui.cli import freeze_dashboard_imports
    from orchestrator_tui.opencode.models import parse_event
    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.tui.app import DashboardApp
    from orchestrator_tui.tui.session_list import SessionList

    painted: dict[str, float] = {}
    signals = {name: asyncio.Event() for name in ("first_row", "last_row", "cursor_row")}
    original = SessionList.render_line

    def mark(name: str, now: float) -> None:
        if name == "first_row":
            painted.setdefault(name, now)
        else:
            painted[name] = now
        signals[name].set()

    def traced(self: SessionList, y: int) -> Any:
        strip = original(self, y)
        if y >= 1 and self.shown:
            now = time.perf_counter()
            mark("first_row", now)
            mark("last_row", now)
            if self.scroll_offset.y + y - 1 == self.cursor:
                mark("cursor_row", now)
        return strip

    async def painted_after(name: str) -> float:
        await signals[name].wait()
        return painted[name]

    def reset(name: str) -> None:
        painted.pop(name, None)
        signals[name].clear()

    SessionList.render_line = traced  # type: ignore[method-assign]
    results: dict[str, float] = {}
    try:
        freeze_dashboard_imports()  # as `orchestrator-tui` does before its pool fills
        service = _service(SESSIONS)
        rss_before_app = _rss_mb()
        app = DashboardApp(service, PoolActions(service, None), None, bell=False)
        started = time.perf_counter()
        async with app.run_test(size=(160, 48)) as pilot:
            results["first_paint_ms"] = (await painted_after("first_row") - started) * 1000
            await pilot.pause()
            results["rss_mb"] = _rss_mb()
            results["rss_before_app_mb"] = rss_before_app

            # Filter keystrokes.
            await pilot.press("slash")
            await pilot.pause()
            latencies = []
            for key in "module 12":
                reset("last_row")
                t0 = time.perf_counter()
                await pilot.press("space" if key == " " else key)
                latencies.append((await painted_after("last_row") - t0) * 1000)
            results["filter_median_ms"] = statistics.median(latencies)
            results["filter_max_ms"] = max(latencies)
            results["filter_shown"] = len(app.session_list.shown)
            for _ in range(len("module 12")):
                await pilot.press("backspace")
            await pilot.press("enter")
            await pilot.pause()

            # 1,000 events/s for a few seconds, with key presses meanwhile.
            busy = [f"ses_{i:024d}" for i in range(200)]
            payloads = []
            for i in range(2000):
                sid = busy[i % len(busy)]
                if i % 10 == 0:
                    kind = "busy" if (i // 10) % 2 == 0 else "idle"
                    status = {"sessionID": sid, "status": {"type": kind}}
                    payloads.append(json.dumps({"type": "session.status", "properties": status}))
                else:
                    payloads.append(
                        json.dumps(
                            {
                                "type": "message.part.delta",
                                "properties": {
                                    "sessionID": sid,
                                    "messageID": f"msg_{sid}",
                                    "partID": f"prt_{sid}",
                                    "field": "text",
                                    "delta": f"token{i} ",
                                },
                            }
                        )
                    )
            stop = asyncio.Event()
            sent = 0

            async def feed() -> None:
                nonlocal sent
                per_tick = EVENT_RATE // 100
                next_tick = time.perf_counter()
                while not stop.is_set():
                    for _ in range(per_tick):
                        service.pool.apply(None, parse_event(payloads[sent % len(payloads)]))
                        sent += 1
                    next_tick += 0.01
                    await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

            cpu0 = os.times()
            wall0 = time.perf_counter()
            feeder = asyncio.get_running_loop().create_task(feed())
            key_latencies = []
            await asyncio.sleep(0.5)
            for _ in range(20):
                reset("cursor_row")
                t0 = time.perf_counter()
                await pilot.press("down")
                key_latencies.append((await painted_after("cursor_row") - t0) * 1000)
                await asyncio.sleep((LOAD_SECONDS - 0.5) / 20)
            stop.set()
            await feeder
            wall = time.perf_counter() - wall0
            cpu1 = os.times()
            results["events_per_s"] = sent / wall
            results["key_median_ms"] = statistics.median(key_latencies)
            results["key_max_ms"] = max(key_latencies)
            print("   key latencies (ms):", " ".join(f"{v:.0f}" for v in key_latencies), flush=True)
            results["cpu_percent"] = 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall
            results["rss_after_load_mb"] = _rss_mb()
    finally:
        SessionList.render_line = original  # type: ignore[method-assign]
    return results


def run() -> list[Figure]:
    r = asyncio.run(_measure())
    print(
        f"   {SESSIONS:,} sessions; filter 'module 12' keeps {int(r['filter_shown']):,}; "
        f"load {r['events_per_s']:.0f} events/s for {LOAD_SECONDS:.0f} s; RSS before the app "
        f"{r['rss_before_app_mb']:.0f} MB, after load {r['rss_after_load_mb']:.0f} MB",
        flush=True,
    )
    return [
        Figure("dashboard first paint, 10k sessions", r["first_paint_ms"], "ms", 500, "max"),
        Figure("filter keystroke, 10k sessions (median)", r["filter_median_ms"], "ms", 50, "max"),
        Figure("filter keystroke, 10k sessions (max)", r["filter_max_ms"], "ms", 50, "max"),
        Figure("key → screen at 1,000 events/s (median)", r["key_median_ms"], "ms", 100, "max"),
        Figure("key → screen at 1,000 events/s (max)", r["key_max_ms"], "ms", 100, "max"),
        Figure("CPU at 1,000 events/s", r["cpu_percent"], "% of a core", 30, "max"),
        Figure("RSS with 10k sessions", r["rss_mb"], "MB", 200, "max"),
    ]


if __name__ == "__main__":
    from benchmarks._common import print_figures

    print_figures(run())
