"""MCP worker cold start: process start → ``initialize`` answered → ``tools/list`` answered.

    python -m benchmarks.cold_start [--runs 15] [--sdk-runs 5]

Budget (docs/budgets.md): process start → ``initialize`` + ``tools/list`` answered ≤ 500 ms.

Each run spawns the worker the way an MCP client does (the installed ``orchestrator-tui mcp``
console script, stdin/stdout pipes, its own process group) and speaks raw newline-delimited
JSON-RPC: ``initialize`` is written at once (a client does not wait for the process to be ready),
then, once it is answered, ``notifications/initialized`` and ``tools/list``. The clock starts just
before the spawn. As extra information: the time until the worker has fully loaded (a
``tools/call`` of an unknown tool answered: that one needs the MCP SDK, not the recorded
handshake), and the time from closing stdin to the process exit. ``--runs`` runs after one
warm-up; median and p90.

Then the same through the official MCP SDK 2.x ``Client`` in its default ``mode="auto"``, which
opens with ``server/discover`` (protocol 2026-07-28) instead of ``initialize``: spawn → ``list_tools``
answered, ``--sdk-runs`` runs after one warm-up.

Bytecode: the workers get ``PYTHONPYCACHEPREFIX`` pointing at a temp dir (filled by the warm-up),
as an installed package has its ``.pyc`` files, without writing into the source tree;
``PYTHONDONTWRITEBYTECODE`` is dropped for them. No OpenCode is started: the worker starts it on
the first real tool call only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Figure,
    LineReader,
    fmt,
    isolated_env,
    load_note,
    median,
    ms,
    p90,
    print_figures,
    stop_group,
    temp_root,
    worker_command,
)

BUDGET_MS = 500.0
DEFAULT_RUNS = 15
DEFAULT_SDK_RUNS = 5
PROTOCOL_VERSION = "2025-11-25"  # what the SDK's own initialize() proposes (LATEST_HANDSHAKE_VERSION)
LINE_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0


def _request(ident: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


def _expect(line: bytes, ident: int) -> dict[str, Any]:
    message = json.loads(line)
    if message.get("id") != ident or "result" not in message:
        raise RuntimeError(f"unexpected reply to request {ident}: {line[:300]!r}")
    return message["result"]


def one_raw_run(env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One worker lifetime over raw stdio; times in seconds from just before the spawn."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*worker_command(), "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        reader = LineReader(proc)
        proc.stdin.write(
            _request(
                1,
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "orchestrator-tui-bench", "version": "0"},
                },
            )
        )
        proc.stdin.flush()
        result = _expect(reader.readline(LINE_TIMEOUT), 1)
        initialized = time.monotonic()
        if result.get("protocolVersion") != PROTOCOL_VERSION:
            raise RuntimeError(f"initialize negotiated {result.get('protocolVersion')!r}")
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n' + _request(2, "tools/list"))
        proc.stdin.flush()
        tools = _expect(reader.readline(LINE_TIMEOUT), 2).get("tools", [])
        listed = time.monotonic()
        if len(tools) != 6:
            raise RuntimeError(f"tools/list returned {len(tools)} tools, expected 6")
        proc.stdin.write(_request(3, "tools/call", {"name": "no_such_tool", "arguments": {}}))
        proc.stdin.flush()
        _expect(reader.readline(LINE_TIMEOUT), 3)
        loaded = time.monotonic()
        proc.stdin.close()
        proc.wait(timeout=EXIT_TIMEOUT)
        exited = time.monotonic()
        return {
            "initialize": initialized - started,
            "tools_list": listed - started,
            "loaded": loaded - started,
            "exit": exited - loaded,
        }
    finally:
        stop_group(proc)


async def one_sdk_run(env: dict[str, str], cwd: Path, errlog: Any) -> dict[str, float]:
    """Spawn → ``Client.__aenter__`` (server/discover answered) → ``list_tools`` answered."""
    from mcp.client.client import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    command = worker_command()
    params = StdioServerParameters(command=command[0], args=[*command[1:], "mcp"], env=env, cwd=cwd)
    started = time.monotonic()
    async with Client(stdio_client(params, errlog=errlog)) as client:  # mode="auto", the SDK default
        entered = time.monotonic()
        tools = await client.list_tools()
        listed = time.monotonic()
        version = client.protocol_version
    if len(tools.tools) != 6:
        raise RuntimeError(f"list_tools returned {len(tools.tools)} tools, expected 6")
    return {"handshake": entered - started, "tools_list": listed - started, "version": version}  # type: ignore[dict-item]


def measure(runs: int, sdk_runs: int) -> dict[str, Any]:
    import anyio

    with temp_root("cold") as root:
        env = isolated_env(root)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        cwd = root / "cwd"
        cwd.mkdir()
        one_raw_run(env, cwd)  # warm-up: fills the bytecode cache, warms the page cache
        raw = [one_raw_run(env, cwd) for _ in range(runs)]
        sdk: list[dict[str, Any]] = []
        if sdk_runs > 0:
            with open(os.devnull, "w") as devnull:
                anyio.run(one_sdk_run, env, cwd, devnull)  # warm-up (and the client's own first-use costs)
                sdk = [anyio.run(one_sdk_run, env, cwd, devnull) for _ in range(sdk_runs)]
    return {"raw": raw, "sdk": sdk}


def run(runs: int = DEFAULT_RUNS, sdk_runs: int = DEFAULT_SDK_RUNS) -> list[Figure]:
    data = measure(runs, sdk_runs)
    raw = data["raw"]

    def series(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [ms(row[key]) for row in rows]

    init, listed, loaded, exits = (series(raw, k) for k in ("initialize", "tools_list", "loaded", "exit"))
    print(
        f"  raw stdio, initialize ({PROTOCOL_VERSION}), {runs} runs after 1 warm-up; {load_note()}\n"
        f"    initialize answered:            median {fmt(median(init))} ms, p90 {fmt(p90(init))} ms\n"
        f"    + tools/list answered:          median {fmt(median(listed))} ms, p90 {fmt(p90(listed))} ms\n"
        f"    fully loaded (SDK answers a tools/call): median {fmt(median(loaded))} ms, "
        f"p90 {fmt(p90(loaded))} ms (extra information)\n"
        f"    stdin closed → process exited:  median {fmt(median(exits))} ms"
    )
    figures = [
        Figure(
            "worker cold start",
            median(listed),
            "ms",
            BUDGET_MS,
            "max",
            detail=f"median {fmt(median(listed))} ms, p90 {fmt(p90(listed))} ms",
        )
    ]
    sdk = data["sdk"]
    if sdk:
        handshake, sdk_listed = series(sdk, "handshake"), series(sdk, "tools_list")
        version = sdk[0]["version"]
        print(
            f"  MCP SDK 2.x Client, default mode='auto' (negotiated {version}), {len(sdk)} runs after 1 warm-up\n"
            f"    handshake answered:             median {fmt(median(handshake))} ms, p90 {fmt(p90(handshake))} ms\n"
            f"    + list_tools answered:          median {fmt(median(sdk_listed))} ms, p90 {fmt(p90(sdk_listed))} ms"
        )
        figures.append(
            Figure(
                "worker cold start, SDK Client mode=auto",
                median(sdk_listed),
                "ms",
                BUDGET_MS,
                "max",
                detail=f"median {fmt(median(sdk_listed))} ms, p90 {fmt(p90(sdk_listed))} ms",
            )
        )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="raw-stdio runs after one warm-up")
    parser.add_argument(
        "--sdk-runs", type=int, default=DEFAULT_SDK_RUNS, help="SDK Client (mode=auto) runs after one warm-up; 0 = skip"
    )
    args = parser.parse_args(argv)
    print("worker cold start (orchestrator-tui mcp: process start → initialize + tools/list answered)")
    print_figures(run(args.runs, args.sdk_runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
