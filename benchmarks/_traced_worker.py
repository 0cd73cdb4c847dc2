"""``orchestrator-tui`` with a few timestamps added, for the run-overhead breakdown.

    BENCH_TRACE_FILE=/path python -m benchmarks._traced_worker mcp --attach URL

Wraps four points of the worker's path after a session goes idle and appends
``<time.monotonic()> <label> <session id>`` lines to ``$BENCH_TRACE_FILE``. CLOCK_MONOTONIC is
system-wide on Linux, so these stamps compare directly with the benchmark's own.

* ``pool-idle``: the worker's pool received ``session.idle`` from its own ``/event`` stream;
* ``finalize``: the ``run`` state machine accepted the idle and starts building the result;
* ``messages-start`` / ``messages-end``: its ``GET /session/{id}/message`` (OpenCode + httpx + decode);
* ``response``: a JSON-RPC response line has been written and flushed to stdout.

Each wrapper costs a few microseconds; the benchmark's ``--plain`` mode runs the console script
without them to check that they do not move the figures.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from typing import Any


def install(path: str) -> None:
    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def mark(label: str, sid: str = "-") -> None:
        out.write(f"{time.monotonic():.6f} {label} {sid}\n")

    from orchestrator_tui.mcp import prelude

    original_write = prelude.Wire.write

    @functools.wraps(original_write)
    def write(self: Any, text: str) -> None:
        original_write(self, text)
        if '"result"' in text or '"error"' in text:
            try:
                message = json.loads(text)
            except ValueError:
                return
            if isinstance(message, dict) and "id" in message and "method" not in message:
                mark("response", str(message["id"]))

    prelude.Wire.write = write  # type: ignore[method-assign]

    from orchestrator_tui.pool.state import Pool

    original_apply = Pool.apply

    @functools.wraps(original_apply)
    def apply(self: Any, directory: str | None, event: Any) -> None:
        if getattr(event, "type", None) == "session.idle":
            mark("pool-idle", event.properties.sessionID)
        original_apply(self, directory, event)

    Pool.apply = apply  # type: ignore[method-assign]

    from orchestrator_tui.opencode.client import OpenCodeClient

    original_messages = OpenCodeClient.messages

    @functools.wraps(original_messages)
    async def messages(self: Any, session_id: str, *args: Any, **kwargs: Any) -> Any:
        mark("messages-start", session_id)
        try:
            return await original_messages(self, session_id, *args, **kwargs)
        finally:
            mark("messages-end", session_id)

    OpenCodeClient.messages = messages  # type: ignore[method-assign]

    from orchestrator_tui.orchestrator import run as run_module

    machine = getattr(run_module, "RunMachine", None)
    original_finalize = getattr(machine, "finalize", None)
    if machine is not None and original_finalize is not None:

        @functools.wraps(original_finalize)
        async def finalize(self: Any, sid: str, *args: Any, **kwargs: Any) -> Any:
            mark("finalize", sid)
            return await original_finalize(self, sid, *args, **kwargs)

        machine.finalize = finalize


def main() -> int:
    path = os.environ.get("BENCH_TRACE_FILE")
    if path:
        install(path)
    from orchestrator_tui.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
