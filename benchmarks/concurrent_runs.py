"""Concurrent ``run`` calls on one worker: 200 at once, every response right.

    python -m benchmarks.concurrent_runs [--runs 200]

Budget (docs/budgets.md): 200 concurrent runs on one worker, every response right.

Setup: a real OpenCode 1.18.33 (`ManagedServer`, isolated XDG storage, default configuration) on
the scripted model (in its own process), and one worker launched the way an MCP client launches
it, ``orchestrator-tui mcp --attach <url>``, driven by the official MCP SDK 2.x `Client` over
stdio. One warm-up ``run``, then ``--runs`` ``run`` calls sent at once, each creating its own
session: half ``ECHO answer-<i>``, half streamed ``FAST <20+i>``. A response is right when it is
``completed`` with exactly the text the scripted model sent for that prompt.

Reported: how many were right (the budget), the wall time of the whole batch and the per-call
distribution, and for the worker and the OpenCode server the peak resident memory (sampled every
0.1 s) and the CPU time used during the batch. OpenCode does the turns on one JavaScript thread
(plus a git snapshot per prompt); the worker's CPU is what waiting for them costs us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Figure,
    Interrupted,
    check_interrupted,
    fmt,
    interruptible,
    isolated_env,
    load_note,
    make_project,
    median,
    opencode_config_json,
    p90,
    print_figures,
    resolve_opencode,
    scripted_model_process,
    temp_root,
    worker_command,
)

DEFAULT_RUNS = 200
CALL_TIMEOUT = 900.0
SAMPLE_EVERY = 0.1


def prompt_for(index: int) -> tuple[str, str]:
    """Half short echoes, half streamed replies of different lengths: (prompt, the right response)."""
    if index % 2 == 0:
        return f"ECHO answer-{index}", f"answer-{index}"
    count = 20 + index
    return f"FAST {count}", "".join(f"w{i} " for i in range(count))


class ProcessWatch:
    """Peak RSS and CPU time of a few processes, read from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_rss: dict[str, int] = dict.fromkeys(pids, 0)
        self.cpu_start: dict[str, float] = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        self.cpu_used: dict[str, float] = dict.fromkeys(pids, 0.0)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak_rss[name] = max(self.peak_rss[name], _rss_bytes(pid))

    def stop(self) -> None:
        self.sample()
        for name, pid in self.pids.items():
            self.cpu_used[name] = _cpu_seconds(pid) - self.cpu_start[name]

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY)


def _rss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _worker_pid(marker: str) -> int:
    """The worker the MCP client spawned: our child whose command line carries ``marker``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == me and marker in (entry / "cmdline").read_text():
                return int(entry.name)
    raise RuntimeError("could not find the worker process")


async def measure(runs: int) -> dict[str, Any]:
    opencode = resolve_opencode()
    async with interruptible():
        with temp_root("concurrent") as root, scripted_model_process() as model_url:
            return await _measure_in(root, model_url, opencode, runs)


async def _measure_in(root: Path, model_url: str, opencode: str, runs: int) -> dict[str, Any]:
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from orchestrator_tui.opencode.binary import Launcher
    from orchestrator_tui.opencode.process import ManagedServer

    env = isolated_env(root)
    env["OPENCODE_BINARY"] = opencode
    project = make_project(root)
    server = await ManagedServer.start(
        launcher=Launcher(opencode), cwd=project, env=env, config_content=opencode_config_json(model_url)
    )
    try:
        worker_env = dict(env, OPENCODE_SERVER_PASSWORD=server.password.reveal())
        command = worker_command()
        params = StdioServerParameters(
            command=command[0],
            args=[*command[1:], "mcp", "--attach", server.base_url],
            env=worker_env,
            cwd=project,
        )
        log_path = root / "worker.log"
        with log_path.open("w") as errlog:
            try:
                async with Client(
                    stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=CALL_TIMEOUT
                ) as client:
                    pids = {"worker": _worker_pid(server.base_url), "opencode": server.pid}
                    return await _drive(client, pids, runs)
            except Exception:
                tail = log_path.read_text(errors="replace")[-3000:]
                print(f"worker failed; its stderr ended with:\n{tail}", file=sys.stderr)
                raise
    finally:
        await server.stop()


async def _call(client: Any, message: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = await client.call_tool("run", {"message": message})
    data = dict(result.structured_content or {})
    if result.is_error:
        data = {"status": "error", "error": " ".join(getattr(c, "text", "") for c in result.content)}
    return data, time.monotonic() - started


async def _drive(client: Any, pids: dict[str, int], runs: int) -> dict[str, Any]:
    warm, _ = await _call(client, "ECHO warm")
    if warm.get("response") != "warm":
        raise RuntimeError(f"the warm-up run failed: {warm}")
    check_interrupted()
    expected = [prompt_for(i) for i in range(runs)]
    watch = ProcessWatch(pids)  # CPU counted from here: the batch only
    sampler = asyncio.get_running_loop().create_task(watch.run())
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(_call(client, prompt) for prompt, _ in expected))
    finally:
        sampler.cancel()
        watch.stop()
    total = time.monotonic() - started
    wrong = [
        (prompt, data)
        for (prompt, answer), (data, _) in zip(expected, results, strict=True)
        if data.get("status") != "completed" or data.get("response") != answer
    ]
    return {
        "runs": runs,
        "total": total,
        "durations": [elapsed for _, elapsed in results],
        "wrong": wrong,
        "peak_rss": watch.peak_rss,
        "cpu": watch.cpu_used,
    }


def run(runs: int = DEFAULT_RUNS) -> list[Figure]:
    data = asyncio.run(measure(runs))
    wrong = data["wrong"]
    right = data["runs"] - len(wrong)
    durations = data["durations"]
    mb = {name: value / 2**20 for name, value in data["peak_rss"].items()}
    cpu = data["cpu"]
    print(
        f"  {right} of {runs} right in {fmt(data['total'])} s; per call: median {fmt(median(durations))} s, "
        f"p90 {fmt(p90(durations))} s, max {fmt(max(durations))} s"
    )
    print(
        f"  peak RSS: worker {fmt(mb['worker'])} MB, OpenCode {fmt(mb['opencode'])} MB; CPU during the batch: "
        f"worker {fmt(cpu['worker'])} s, OpenCode {fmt(cpu['opencode'])} s; {load_note()}"
    )
    for prompt, result in wrong[:5]:
        print(f"  wrong: {prompt!r} -> {str(result)[:200]}")
    return [
        Figure(
            f"concurrent runs on one worker ({runs} at once): responses right",
            right,
            f"of {runs}",
            runs,
            "min",
            detail=(
                f"{right} of {runs} right in {fmt(data['total'])} s, worker peak RSS {fmt(mb['worker'])} MB, "
                f"OpenCode peak RSS {fmt(mb['opencode'])} MB"
            ),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrent_runs", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="run calls sent at once (default 200)")
    args = parser.parse_args(argv)
    print("concurrent runs (one worker, real OpenCode, every response checked)")
    try:
        print_figures(run(args.runs))
    except (Interrupted, KeyboardInterrupt):
        print("concurrent runs: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
