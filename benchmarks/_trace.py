"""A timeline of what the dashboard's process does, to find where a slow key's time goes.

Installed by `benchmarks._pty_app` when ``BENCH_TRACE`` names a file (``pty_keys --trace FILE``).
It records, on the system-wide monotonic clock the benchmark stamps its key presses with:

- ``key``: a key event reaching the app's message loop;
- ``frame``: one screen update rendered and handed to the driver (start, duration, bytes);
- ``slow``: any event-loop callback that ran for 8 ms or more, named by its task or function;
- ``layout``: a widget asking for the screen to be laid out again (the costly kind of refresh);
- ``gc``: a garbage collection of generation 2, or any that took 5 ms or more.

- ``msg``: a message whose handler ran that long, named by its receiver and its type.

``BENCH_TRACE_SLOW_MS`` lowers the 8 ms threshold (0.3 shows nearly everything between a key and
its frame). ``BENCH_PROFILE_KEYS=1`` also profiles the 200 ms after each key, one cProfile file
per key name (``FILE.down.prof``, ``FILE.question_mark.prof``...), for ``python -m pstats``.
The figures it costs (a clock read per loop callback) are small beside what it finds; the
benchmark's own figures are taken without it.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

SLOW_CALLBACK_S = float(os.environ.get("BENCH_TRACE_SLOW_MS", "8")) / 1000
SLOW_GC_S = 0.005


def install(path: Path) -> None:
    events: list[dict[str, Any]] = []
    clock = time.monotonic

    original_run = asyncio.events.Handle._run

    def timed_run(self: asyncio.events.Handle) -> None:
        t0 = clock()
        original_run(self)
        took = clock() - t0
        if took >= SLOW_CALLBACK_S:
            events.append({"kind": "slow", "t": t0, "ms": took * 1000, "what": _describe(self)})

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]

    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started.append(clock())
        elif gc_started:
            t0 = gc_started.pop()
            took = clock() - t0
            if info["generation"] == 2 or took >= SLOW_GC_S:
                events.append(
                    {
                        "kind": "gc",
                        "t": t0,
                        "ms": took * 1000,
                        "gen": info["generation"],
                        "collected": info["collected"],
                        "survivors": len(gc.get_objects(2)) if info["generation"] == 2 else None,
                    }
                )

    gc.callbacks.append(on_gc)

    from textual.app import App
    from textual.message_pump import MessagePump

    original_display = App._display
    original_on_event = App.on_event

    def display(self: App[Any], screen: Any, renderable: Any) -> None:
        t0 = clock()
        original_display(self, screen, renderable)
        if renderable is not None:
            events.append({"kind": "frame", "t": t0, "ms": (clock() - t0) * 1000, "screen": type(screen).__name__})

    profiles: dict[str, Any] = {}
    profiling: list[Any] = []

    def profile_key(key: str) -> None:
        """``BENCH_PROFILE_KEYS``: profile the 200 ms after each key, one profile per key name."""
        import cProfile

        if profiling:
            return
        profile = profiles.setdefault(key, cProfile.Profile())
        profile.enable()
        profiling.append(profile)

        def stop() -> None:
            profiling.pop().disable()

        asyncio.get_running_loop().call_later(0.2, stop)

    original_dispatch = MessagePump._dispatch_message

    async def dispatch(self: MessagePump, message: Any) -> None:
        t0 = clock()
        await original_dispatch(self, message)
        took = clock() - t0
        if took >= SLOW_CALLBACK_S:
            events.append(
                {"kind": "msg", "t": t0, "ms": took * 1000, "what": f"{type(self).__name__} {type(message).__name__}"}
            )

    MessagePump._dispatch_message = dispatch  # type: ignore[method-assign]

    from textual.widget import Widget

    original_refresh = Widget.refresh

    def refresh(self: Widget, *regions: Any, repaint: bool = True, layout: bool = False, **kwargs: Any) -> Widget:
        if layout and not self._layout_required:
            events.append({"kind": "layout", "t": clock(), "what": f"{type(self).__name__}#{self.id}"})
        return original_refresh(self, *regions, repaint=repaint, layout=layout, **kwargs)

    Widget.refresh = refresh  # type: ignore[method-assign]

    async def on_event(self: App[Any], event: Any) -> None:
        from textual import events as textual_events

        if isinstance(event, textual_events.Key):
            events.append({"kind": "key", "t": clock(), "key": event.key})
            if os.environ.get("BENCH_PROFILE_KEYS"):
                profile_key(event.key)
        await original_on_event(self, event)

    App._display = display  # type: ignore[method-assign]
    App.on_event = on_event  # type: ignore[method-assign]

    def dump() -> None:
        path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
        for key, profile in profiles.items():
            profile.dump_stats(f"{path}.{key}.prof")

    atexit.register(dump)


def _describe(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_qualname}:{frame.f_lineno}" if frame is not None else ""
        return f"task {owner.get_name()}{where}"
    return getattr(callback, "__qualname__", repr(callback))
