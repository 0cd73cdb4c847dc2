"""Run the agent-side benchmarks and print a table against the budgets of docs/budgets.md.

    python -m benchmarks [NAME ...]      (./dev bench)

NAME is any of ``cold_start``, ``status_line``, ``run_overhead``, ``concurrent_runs``, ``pool_ingest``, ``recovery``,
``pty_keys`` (the dashboard: the human-side budgets), ``pool_ingest_servers`` and ``pty_keys_servers``
(the same two with 3 servers × 3,000 sessions); default: all, in that order. Each module has
``run(**options) -> list[Figure]``; a NAME is a module and its options. These are measurements,
not tests: the exit status is 0 even when a budget is missed (the table says MISSED); it is 1 only
when a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from typing import Any

from benchmarks._common import Figure, Interrupted, print_figures, print_table

#: name → (module, options of its ``run``, what it measures)
BENCHMARKS: dict[str, tuple[str, dict[str, Any], str]] = {
    "cold_start": (
        "cold_start",
        {},
        "worker cold start (orchestrator-tui mcp: process start → initialize + tools/list answered)",
    ),
    "status_line": (
        "status_line",
        {},
        "orchestrator-tui status (process start → line printed, exited; no server involved)",
    ),
    "run_overhead": (
        "run_overhead",
        {},
        "run overhead (session.idle on /event → MCP client has the tools/call result)",
    ),
    "concurrent_runs": (
        "concurrent_runs",
        {},
        "concurrent runs (200 run calls at once on one worker, every response checked)",
    ),
    "pool_ingest": (
        "pool_ingest",
        {},
        "pool ingest (recorded real events through parse_event + Pool.apply, one core)",
    ),
    "recovery": (
        "recovery",
        {},
        "shared pool recovery (the pool's OpenCode SIGKILLed under two front ends → both working)",
    ),
    "pty_keys": (
        "pty_keys",
        {},
        "dashboard key → screen in a real pty (160×48, 10,000 sessions, 1,000 events/s)",
    ),
    "pool_ingest_servers": (
        "pool_ingest",
        {"servers": 3},
        "pool ingest, 3 servers (their events interleaved, through parse_global_event + Pool.apply, one core)",
    ),
    "pty_keys_servers": (
        "pty_keys",
        {"servers": 3},
        "dashboard key → screen in a real pty, 3 fake OpenCode servers × 3,000 sessions, 1,000 events/s in all",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="any of: " + ", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    names = args.names or list(BENCHMARKS)
    figures: list[Figure] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        module_name, options, title = BENCHMARKS[name]
        print(f"\n== {title}", flush=True)
        began = time.monotonic()
        try:
            module = importlib.import_module(f"benchmarks.{module_name}")
            results = module.run(**options)
        except (KeyboardInterrupt, Interrupted):
            print(f"\n{name}: interrupted; stopping", flush=True)
            return 130
        except Exception:
            traceback.print_exc()
            print(f"{name}: FAILED (could not measure)", flush=True)
            failed.append(name)
            continue
        print_figures(results)
        print(f"   ({time.monotonic() - began:.0f} s)", flush=True)
        figures.extend(results)
    print(f"\n== summary ({time.monotonic() - started:.0f} s)\n")
    if figures:
        print_table(figures)
    if failed:
        print(f"FAILED to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
