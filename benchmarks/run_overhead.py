"""``run`` overhead: OpenCode marks the session idle → the MCP client has the result.

    python -m benchmarks.run_overhead [--runs 20] [--mode legacy|auto ...] [--plain]

Budget (docs/budgets.md): ≤ 20 ms median.

Setup: a real OpenCode 1.18.33 (`ManagedServer`, isolated XDG storage) on the scripted model (in its
own process), and the worker launched the way an MCP client launches it, ``orchestrator-tui mcp
--attach <url>`` with ``OPENCODE_SERVER_PASSWORD``, driven by the official MCP SDK 2.x `Client` over
stdio. The benchmark listens to the same server's ``/event`` itself and stamps ``session.idle`` of
the session with `time.monotonic()`; the MCP client's transport stamps the ``tools/call`` response
with the same clock in the same process when its line has been read off the worker's stdout.

For ``--runs`` sequential ``run(session_id, message="Say exactly 'ok'")`` calls on one session
(after warm-up calls that create the session and pay the instance's first-prompt bootstrap),
overhead = response arrival − idle event arrival. Also reported: the same up to the moment
``call_tool`` returns (SDK client parsing included), and OpenCode's own latency for
``GET /session/{id}/message``, the one request the worker makes after the idle, timed directly
right at ``session.idle`` of matched benchmark-driven turns (same session, same history size).

The worker runs as ``python -m benchmarks._traced_worker mcp --attach …``: the product's CLI with
timestamps at four points (see that module), which split each run's overhead into: the worker's
own ``/event`` delivery of the idle, waking the ``run`` loop, its ``GET /session/{id}/message``,
building and writing the result, and the pipe + client read. ``--plain`` runs the installed
``orchestrator-tui`` console script instead (no breakdown), to check the stamps cost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._common import (
    REPO_DIR,
    Figure,
    Interrupted,
    check_interrupted,
    fmt,
    interruptible,
    isolated_env,
    load_note,
    make_project,
    median,
    ms,
    opencode_config_json,
    p90,
    print_figures,
    resolve_opencode,
    scripted_model_process,
    temp_root,
    worker_command,
)

BUDGET_MS = 20.0
DEFAULT_RUNS = 20
WARMUP_RUNS = 3
QUIET_PROBES = 10
#: What finalize would need with ``?limit=`` (the last assistant message is among the last few).
LIMITED = 4
MESSAGE = "Say exactly 'ok'"
CALL_TIMEOUT = 60.0
SETTLE = 0.25  # between calls: lets the turn's trailing events drain, as an agent's think time would


class IdleLog:
    """``session.idle`` arrivals per session, stamped by the benchmark's own ``/event`` listener."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self._changed = asyncio.Event()
        self.on_idle: list[Any] = []

    def on_payload(self, raw: str, arrived: float) -> None:
        if '"session.idle"' not in raw:
            return
        event = json.loads(raw)
        if event.get("type") != "session.idle":
            return
        sid = event["properties"]["sessionID"]
        self.times[sid].append(arrived)
        self._changed.set()
        for callback in self.on_idle:
            callback(sid, arrived)

    async def wait_count(self, sid: str, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.times[sid]) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True


class ResponseStamp:
    """Wraps an MCP client transport: notes when each JSON-RPC response is read off the wire."""

    def __init__(self) -> None:
        self.last_response_at = 0.0

    @contextlib.asynccontextmanager
    async def wrap(self, transport: Any) -> AsyncIterator[Any]:
        import anyio

        async with transport as (read_stream, write_stream):
            send, receive = anyio.create_memory_object_stream[Any](0)

            async def pump() -> None:
                async with send:
                    async for item in read_stream:
                        message = getattr(item, "message", None)
                        if message is not None and hasattr(message, "id") and not hasattr(message, "method"):
                            self.last_response_at = time.monotonic()
                        await send.send(item)

            async with anyio.create_task_group() as group:
                group.start_soon(pump)
                try:
                    yield receive, write_stream
                finally:
                    group.cancel_scope.cancel()
                    await receive.aclose()


class Trace:
    """The traced worker's stamps (``benchmarks._traced_worker``), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        path.touch()

    def read_new(self) -> list[tuple[float, str, str]]:
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        marks = []
        for line in data[:end].decode().splitlines():
            stamp, label, ident = line.split(" ", 2)
            marks.append((float(stamp), label, ident))
        return marks


SEGMENTS = (
    ("worker's /event delivery of the idle (vs ours)", "idle", "pool-idle"),
    ("run loop wakes and accepts the idle", "pool-idle", "finalize"),
    ("GET /session/{id}/message in the worker (OpenCode + httpx + decode)", "messages-start", "messages-end"),
    ("result built, serialized and written", "messages-end", "response"),
    ("pipe + MCP client read", "response", "read"),
)


def _segments(marks: list[tuple[float, str, str]], sid: str, idle_at: float, read_at: float) -> dict[str, float]:
    """The stamps of one run: the first of each after the worker's idle, the last response."""
    points: dict[str, float] = {"idle": idle_at, "read": read_at}
    for stamp, label, ident in marks:
        if label == "response":
            if "pool-idle" in points and stamp <= read_at:
                points[label] = stamp  # the last one before the client read it
            continue
        if ident != sid:
            continue
        if label == "pool-idle":
            points.setdefault(label, stamp)
        elif "pool-idle" not in points:
            continue
        elif label == "messages-end":
            points[label] = stamp  # the last one (finalize retries when the reply is not there yet)
        else:
            points.setdefault(label, stamp)
    return {name: points[end] - points[start] for name, start, end in SEGMENTS if start in points and end in points}


async def _timed_get_messages(http: Any, sid: str, limit: int | None = None) -> float:
    started = time.monotonic()
    response = await http.get(f"/session/{sid}/message", params={"limit": limit} if limit else None)
    response.raise_for_status()
    response.read()
    return time.monotonic() - started


async def measure(runs: int, modes: list[str], plain: bool = False) -> dict[str, Any]:
    opencode = resolve_opencode()
    results: dict[str, Any] = {"modes": {}}
    async with interruptible():
        with temp_root("run") as root, scripted_model_process() as model_url:
            await _measure_in(root, model_url, opencode, runs, modes, plain, results)
    return results


async def _measure_in(
    root: Path, model_url: str, opencode: str, runs: int, modes: list[str], plain: bool, results: dict[str, Any]
) -> None:
    import httpx
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from benchmarks._sse import EventTap
    from orchestrator_tui.opencode.binary import Launcher
    from orchestrator_tui.opencode.process import ManagedServer

    env = isolated_env(root)
    env["OPENCODE_BINARY"] = opencode
    project = make_project(root)
    server = await ManagedServer.start(
        launcher=Launcher(opencode), cwd=project, env=env, config_content=opencode_config_json(model_url)
    )
    idles = IdleLog()
    tap = EventTap(server.base_url, server.auth, idles.on_payload, directory=str(project))
    http = httpx.AsyncClient(
        base_url=server.base_url,
        auth=server.auth,
        params={"directory": str(project)},
        timeout=30.0,
        trust_env=False,
    )
    try:
        await tap.start()
        worker_env = dict(env)
        worker_env["OPENCODE_SERVER_PASSWORD"] = server.password.reveal()
        sid = ""
        for mode in modes:
            stamp = ResponseStamp()
            trace: Trace | None = None
            if plain:
                command = worker_command()
                args = [*command[1:], "mcp", "--attach", server.base_url]
                launch_env = worker_env
            else:
                trace = Trace(root / f"trace-{mode}.txt")
                command = [sys.executable]
                args = ["-m", "benchmarks._traced_worker", "mcp", "--attach", server.base_url]
                launch_env = dict(worker_env, BENCH_TRACE_FILE=str(trace.path))
                launch_env["PYTHONPATH"] = os.pathsep.join(
                    p for p in (str(REPO_DIR), worker_env.get("PYTHONPATH", "")) if p
                )
            params = StdioServerParameters(command=command[0], args=args, env=launch_env, cwd=project)
            log_path = root / f"worker-{mode}.log"
            with log_path.open("w") as errlog:
                transport = stamp.wrap(stdio_client(params, errlog=errlog))
                try:
                    async with Client(transport, mode=mode, read_timeout_seconds=CALL_TIMEOUT) as client:
                        figures = await _drive(client, stamp, idles, http, trace, sid, runs)
                except Exception:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    print(f"worker ({mode}) failed; its stderr ended with:\n{tail}", file=sys.stderr)
                    raise
            sid = figures["session_id"]
            results["modes"][mode] = figures
        results["get_quiet"] = [await _timed_get_messages(http, sid) for _ in range(QUIET_PROBES)]
        results["get_quiet_limited"] = [await _timed_get_messages(http, sid, LIMITED) for _ in range(QUIET_PROBES)]
    finally:
        await tap.stop()
        await http.aclose()
        await server.stop()


async def _call_run(client: Any, args: dict[str, str]) -> dict[str, Any]:
    result = await client.call_tool("run", args)
    data = result.structured_content or {}
    if result.is_error or data.get("status") != "completed":
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise RuntimeError(f"run did not complete: {text or data}")
    return data


async def _drive(
    client: Any, stamp: ResponseStamp, idles: IdleLog, http: Any, trace: Trace | None, sid: str, runs: int
) -> dict[str, Any]:
    if not sid:  # the first call creates the session (and pays the instance's first-prompt bootstrap)
        sid = (await _call_run(client, {"message": MESSAGE}))["session_id"]
    for _ in range(WARMUP_RUNS):
        check_interrupted()
        await _call_run(client, {"session_id": sid, "message": MESSAGE})
    await idles.wait_count(sid, 1)
    await asyncio.sleep(SETTLE)
    wire: list[float] = []
    returned: list[float] = []
    at_idle: dict[int | None, list[float]] = {None: [], LIMITED: []}
    sizes: list[int] = []
    segments: dict[str, list[float]] = defaultdict(list)
    extra_idles = 0
    if trace is not None:
        trace.read_new()
    for index in range(runs):
        check_interrupted()
        seen = len(idles.times[sid])
        data = await _call_run(client, {"session_id": sid, "message": MESSAGE})
        done = time.monotonic()
        if data.get("response") != "ok":
            raise RuntimeError(f"unexpected response {data.get('response')!r}")
        if not await idles.wait_count(sid, seen + 1):
            raise RuntimeError("the benchmark's /event listener never saw session.idle for the run")
        await asyncio.sleep(SETTLE)
        extra_idles += len(idles.times[sid]) - seen - 1
        idle_at = idles.times[sid][seen]
        wire.append(stamp.last_response_at - idle_at)
        returned.append(done - idle_at)
        if trace is not None:
            for name, value in _segments(trace.read_new(), sid, idle_at, stamp.last_response_at).items():
                segments[name].append(value)
        # A matched probe turn (same session, same history size, no MCP call in flight): OpenCode's
        # latency for the request the worker makes after the idle, fired the moment idle arrives.
        limit = None if index % 2 == 0 else LIMITED
        latency, size = await _probe_turn(http, idles, trace, sid, limit)
        at_idle[limit].append(latency)
        sizes.append(size)
    return {
        "session_id": sid,
        "wire": wire,
        "returned": returned,
        "extra_idles": extra_idles,
        "get_at_idle": at_idle[None],
        "get_at_idle_limited": at_idle[LIMITED],
        "sizes": sizes,
        "segments": dict(segments),
    }


async def _probe_turn(http: Any, idles: IdleLog, trace: Trace | None, sid: str, limit: int | None) -> tuple[float, int]:
    fired: list[asyncio.Task[float]] = []

    def on_idle(session_id: str, arrived: float) -> None:
        if session_id == sid and not fired:
            fired.append(asyncio.get_running_loop().create_task(_timed_get_messages(http, sid, limit)))

    seen = len(idles.times[sid])
    idles.on_idle.append(on_idle)
    try:
        response = await http.post(f"/session/{sid}/prompt_async", json={"parts": [{"type": "text", "text": MESSAGE}]})
        response.raise_for_status()
        if not await idles.wait_count(sid, seen + 1, timeout=CALL_TIMEOUT):
            raise RuntimeError("no session.idle for a benchmark-driven turn")
        latency = await fired[0]
    finally:
        idles.on_idle.remove(on_idle)
    await asyncio.sleep(SETTLE)
    size = len((await http.get(f"/session/{sid}/message")).json())
    if trace is not None:
        trace.read_new()  # nothing of the worker's is in a benchmark-driven turn
    return latency, size


def run(runs: int = DEFAULT_RUNS, modes: list[str] | None = None, plain: bool = False) -> list[Figure]:
    modes = modes or ["legacy"]
    results = asyncio.run(measure(runs, modes, plain))
    figures = []
    for mode, data in results["modes"].items():
        wire = [ms(v) for v in data["wire"]]
        returned = [ms(v) for v in data["returned"]]
        full = [ms(v) for v in data["get_at_idle"]]
        limited = [ms(v) for v in data["get_at_idle_limited"]]
        label = "legacy initialize" if mode == "legacy" else f"mode={mode}"
        sizes = data["sizes"]
        print(
            f"  [{label}] {len(wire)} runs on one session ({min(sizes)}–{max(sizes)} messages): "
            f"idle → response read by the client: median {fmt(median(wire))} ms, p90 {fmt(p90(wire))}, "
            f"max {fmt(max(wire))}, min {fmt(min(wire))}; idle → call_tool returned: median "
            f"{fmt(median(returned))} ms"
            + (f"; {data['extra_idles']} extra idle events" if data["extra_idles"] else "")
        )
        print(
            f"  [{label}] OpenCode GET /session/{{id}}/message fired at session.idle (matched turns): "
            f"full history median {fmt(median(full))} ms (p90 {fmt(p90(full))}), "
            f"?limit={LIMITED} median {fmt(median(limited))} ms"
        )
        segments = data["segments"]
        if segments:
            print(f"  [{label}] where the time goes (median of each step over the runs, ms):")
            for step, _, _ in SEGMENTS:
                values = [ms(v) for v in segments.get(step, [])]
                if values:
                    print(f"      {fmt(median(values)):>6}  (p90 {fmt(p90(values)):>6})  {step}")
        else:
            print(
                f"  [{label}] breakdown of the median: OpenCode's GET /message ≈ {fmt(median(full))} ms, "
                f"the rest ≈ {fmt(median(wire) - median(full))} ms"
            )
        name = "run overhead" if len(results["modes"]) == 1 else f"run overhead ({label})"
        figures.append(
            Figure(
                name,
                median(wire),
                "ms",
                BUDGET_MS,
                "max",
                detail=f"median {fmt(median(wire))} ms, p90 {fmt(p90(wire))} ms, max {fmt(max(wire))} ms",
            )
        )
    quiet = [ms(v) for v in results["get_quiet"]]
    quiet_limited = [ms(v) for v in results["get_quiet_limited"]]
    print(
        f"  OpenCode GET /session/{{id}}/message on a quiet server at the end: full history median "
        f"{fmt(median(quiet))} ms, ?limit={LIMITED} median {fmt(median(quiet_limited))} ms; {load_note()}"
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="measured run calls per mode")
    parser.add_argument(
        "--mode",
        action="append",
        choices=["legacy", "auto"],
        help="MCP SDK Client mode: legacy = initialize handshake (default), auto = server/discover (2026-07-28)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="launch the installed console script (no timestamps, no breakdown) instead of the traced worker",
    )
    args = parser.parse_args(argv)
    print("run overhead (session.idle on /event → MCP client has the tools/call result)")
    try:
        print_figures(run(args.runs, args.mode, args.plain))
    except (Interrupted, KeyboardInterrupt):
        print("run overhead: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
