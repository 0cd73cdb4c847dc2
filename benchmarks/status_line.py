"""``orchestrator-tui status``: process start → its line printed and the process exited.

    python -m benchmarks.status_line [--runs 20]

Budget (docs/budgets.md): ≤ 150 ms, the median of the runs (min and max are printed too).

A tmux status bar or a shell prompt runs the command every few seconds, so its whole life counts:
each run spawns the installed console script (as tmux's ``#()`` does, stdout a pipe) and the
clock runs from just before the spawn to the process's exit. Two pools are measured:

* empty: no front end running (the command says so and exits with 2);
* busy: two live front ends (a dashboard and an MCP worker) that see one server with 10,000
  sessions, 1,000 of them busy and 20 requests waiting, the same ones in both files. Their
  status files are written as the front ends write them (``pool/status.py``'s format), each for
  a live process of ours (a ``sleep`` standing in for the front end), so the command reads,
  checks and unites them exactly as it would.

Also printed: the CPU time each run used (user + system), which a loaded machine stretches much
less than the wall time.

Bytecode: as in ``cold_start``, the runs get ``PYTHONPYCACHEPREFIX`` in a temp dir (filled by the
warm-up), i.e. cached bytecode as after a normal install. No OpenCode is started: ``status``
never starts or contacts one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import time
from pathlib import Path

from benchmarks._common import Figure, fmt, isolated_env, load_note, median, ms, print_figures, stop_group, temp_root
from benchmarks._common import worker_command as console_script

BUDGET_MS = 150.0
DEFAULT_RUNS = 20
SESSIONS = 10_000
BUSY = 1_000
WAITING = 20


def one_run(env: dict[str, str], expect: tuple[int, str]) -> tuple[float, float]:
    """(spawn → exit, CPU time of the process), in seconds; checks the exit status and the line."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([*console_script(), "status"], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if (done.returncode, done.stdout.strip()) != expect:
        raise RuntimeError(f"status said {done.stdout!r} (exit {done.returncode}), expected {expect}: {done.stderr!r}")
    return elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def write_front_ends(pool_folder: Path, holders: list[subprocess.Popen[bytes]]) -> None:
    """Status files of two front ends (a dashboard, an MCP worker) seeing the same busy pool."""
    from orchestrator_tui.pool.status import FORMAT, process_start_time, status_dir

    folder = status_dir(pool_folder)
    folder.mkdir(parents=True, mode=0o700)
    sessions = [f"ses_{n:026d}" for n in range(SESSIONS)]
    for holder, kind in zip(holders, ("human", "agent"), strict=True):
        data = {
            "format": FORMAT,
            "pid": holder.pid,
            "start_time": process_start_time(holder.pid),
            "kind": kind,
            "server": {"url": "http://127.0.0.1:4096", "connected": True},
            "sessions": SESSIONS,
            "busy": sessions[:BUSY],
            "permissions": [f"per_{n:026d}" for n in range(WAITING - 2)],
            "questions": [f"que_{n:026d}" for n in range(2)],
            "updated_at": time.time(),
        }
        path = folder / f"{holder.pid}.json"
        path.write_text(json.dumps(data, separators=(",", ":")))
        path.chmod(0o600)


EMPTY = (2, "no front end running")
BUSY_LINE = (1, f"{WAITING} waiting · {BUSY} busy · 1 server")


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    with temp_root("status") as root:
        env = isolated_env(root)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        one_run(env, EMPTY)  # warm-up: fills the bytecode cache, warms the page cache
        empty = [one_run(env, EMPTY) for _ in range(runs)]
        holders = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(2)]
        try:
            write_front_ends(Path(env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default", holders)
            one_run(env, BUSY_LINE)
            busy = [one_run(env, BUSY_LINE) for _ in range(runs)]
        finally:
            for holder in holders:
                stop_group(holder)
    return {"empty": empty, "busy": busy}


def run(runs: int = DEFAULT_RUNS) -> list[Figure]:
    data = measure(runs)
    figures = []
    print(f"  the console script, {runs} runs after 1 warm-up each; {load_note()}")
    for key, name, what in (
        ("empty", "status, no front end", "no front end running"),
        ("busy", "status, 2 front ends", f"2 front ends, {SESSIONS:,} sessions, {BUSY:,} busy, {WAITING} waiting"),
    ):
        values = sorted(ms(wall) for wall, _ in data[key])
        cpu = [ms(used) for _, used in data[key]]
        detail = f"min {fmt(values[0])} ms, median {fmt(median(values))} ms, max {fmt(values[-1])} ms"
        print(f"    {what}: {detail}; CPU time median {fmt(median(cpu))} ms")
        figures.append(Figure(name, median(values), "ms", BUDGET_MS, "max", detail=detail))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_line", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs per pool after one warm-up")
    args = parser.parse_args(argv)
    print("orchestrator-tui status (process start → line printed, exited)")
    print_figures(run(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
